"""Alembic, driven from code: ``rentan db upgrade`` and ``rentan up`` call ``upgrade``."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config

from models.db import normalize_url


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations")))
    # ConfigParser interpolation would choke on a '%' in a password.
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` to ``revision``; idempotent."""
    command.upgrade(alembic_config(url), revision)
