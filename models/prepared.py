"""Statements for the projection's hot writes, run on the DBAPI cursor of a SQLAlchemy connection.

For every statement SQLAlchemy runs it builds an execution context: parameter processing, result
set-up, events. For the projection's small writes that is about 40 µs a statement, four times
what SQLite itself takes, and every step of every enrollment runs three to five
of them. A ``Prepared`` statement is compiled once per dialect and set of parameter names, then
handed to the driver with its values passed through the columns' own bind processors, so the
database receives what ``Connection.execute`` would have sent: a datetime is stored in the same
form either way. It runs inside the caller's transaction, on the same connection.

Only for statements whose results need no SQLAlchemy processing: callers read plain DBAPI rows
(row counts, RETURNING ids, strings), nothing typed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement


@dataclass(frozen=True)
class _Form:
    sql: str
    # Positional paramstyles (SQLite's qmark): the parameters' order; None for named ones.
    order: tuple[str, ...] | None
    # Parameters the statement fixes itself (a literal in an expression), already processed.
    fixed: dict[str, Any]
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]


class Prepared:
    def __init__(self, statement: ClauseElement | Callable[[str], ClauseElement]) -> None:
        """``statement``, or a function of the dialect's name that builds it (an upsert's
        syntax depends on the dialect)."""
        self._build = statement if callable(statement) else (lambda _dialect: statement)
        self._forms: dict[tuple[str, frozenset[str]], _Form] = {}

    def run(self, sql: Connection, values: Mapping[str, Any]) -> int:
        """Execute; the number of rows it changed."""
        cursor = self._execute(sql, values)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def first(self, sql: Connection, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """Execute; its first row (a SELECT's, or what RETURNING gives), if any."""
        cursor = self._execute(sql, values)
        try:
            row = cursor.fetchone()
            return None if row is None else tuple(row)
        finally:
            cursor.close()

    def _execute(self, sql: Connection, values: Mapping[str, Any]) -> Any:
        dialect = sql.dialect
        key = (dialect.name, frozenset(values))
        form = self._forms.get(key)
        if form is None:
            # A race between two threads only compiles the same form twice.
            form = self._forms[key] = self._compile(dialect, key[1])
        params = {**values, **form.fixed}
        for name, process in form.processors:
            params[name] = process(params[name])
        cursor = sql.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if form.order is None:
                cursor.execute(form.sql, params)
            else:
                cursor.execute(form.sql, tuple(params[name] for name in form.order))
        except dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise _as_sqlalchemy_error(sql, form.sql, params, exc) from exc
        return cursor

    def _compile(self, dialect: Dialect, names: frozenset[str]) -> _Form:
        statement = self._build(dialect.name)
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect, column_keys=list(names)))
        prefetched = [*compiled.insert_prefetch, *compiled.update_prefetch]
        if prefetched:  # column defaults SQLAlchemy would compute at execution
            raise ValueError(f"give {', '.join(c.name for c in prefetched)} a value")
        everything = compiled.construct_params(dict.fromkeys(names))
        fixed: dict[str, Any] = {}
        processors: list[tuple[str, Callable[[Any], Any]]] = []
        for bind, name in compiled.bind_names.items():
            if name not in everything:
                continue
            if bind.callable is not None:
                raise ValueError(f"{name}: a default computed at execution cannot be prepared")
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if name in names:
                if process is not None:
                    processors.append((name, process))
            else:
                value = everything[name]
                fixed[name] = process(value) if process is not None else value
        missing = set(everything) - names - set(fixed)
        if missing:
            raise ValueError(f"no value for {sorted(missing)}")
        order = tuple(compiled.positiontup) if compiled.positiontup is not None else None
        return _Form(compiled.string, order, fixed, tuple(processors))


def _as_sqlalchemy_error(
    sql: Connection, statement: str, params: Mapping[str, Any], exc: Exception
) -> BaseException:
    """The driver's error as ``Connection.execute`` would have raised it: callers catch
    SQLAlchemy's ``IntegrityError`` or ``DataError``, and the group-commit writer retries a
    batch when the database dropped its connection (``connection_invalidated``)."""
    dialect = sql.dialect
    lost = dialect.is_disconnect(exc, sql.connection.dbapi_connection, None)  # type: ignore[arg-type]
    if lost:
        sql.invalidate(exc)
    return DBAPIError.instance(
        statement,
        dict(params),
        exc,
        dialect.loaded_dbapi.Error,
        hide_parameters=True,  # a row's values are personal data: never in an error
        connection_invalidated=lost,
        dialect=dialect,
    )
