"""Field-level validation results, the shape the API returns per rejected row."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of a worker row: ``{field, message}`` in the API."""

    field: str
    message: str
