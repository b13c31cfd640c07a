"""Bulk upserts as one statement per chunk, in each database's fastest form.

PostgreSQL takes one array per column (``INSERT ... SELECT * FROM unnest(...)``: the statement's size
does not grow with the rows); SQLite a multi-row ``VALUES`` list of at most 32,766 parameters. Both run
``ON CONFLICT (key) DO UPDATE SET ... WHERE ...`` and may return columns of the rows inserted or
updated (a row whose ``WHERE`` is false is neither, so it is not returned). SQLAlchemy's own multi-row
insert compiles a bind parameter per value, which costs more than the database's work here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection

__all__ = ["upsert"]

_SQLITE_PARAMS = 32_000
_PG_ROWS = 200_000


def _array_literal(values: Sequence[Any], kind: str) -> str:
    """A PostgreSQL array literal: one string per column instead of psycopg adapting each element (which
    quotes every element with a regular expression: most of a bulk upsert's time). Numbers in Python's
    shortest round-trip form, which PostgreSQL reads back exactly; text quoted and escaped."""
    if kind == "text":
        return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"
    return "{" + ",".join(map(repr, values)) + "}"


def upsert(conn: Connection, table: str, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]],
           key: Sequence[str], set_sql: str, *, where: str = "", returning: str = "") -> list[Any]:
    """Insert ``rows`` (tuples in ``columns`` order; ``columns`` are (name, PostgreSQL array type) pairs)
    into ``table``; on a ``key`` conflict run ``set_sql`` (may use ``excluded.<col>`` and ``<table>.<col>``)
    when ``where`` holds. Returns the first ``returning`` column of the affected rows (empty without)."""
    names = ", ".join(c for c, _ in columns)
    tail = f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {set_sql}" + (f" WHERE {where}" if where else "")
    if returning:
        tail += f" RETURNING {returning}"
    out: list[Any] = []
    if conn.dialect.name == "postgresql":
        arrays = ", ".join(f"%s::{kind}[]" for _, kind in columns)
        sql = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays})" + tail
        raw: Any = conn.connection.driver_connection
        with raw.cursor() as cur:
            for lo in range(0, len(rows), _PG_ROWS):
                chunk = rows[lo:lo + _PG_ROWS]
                cur.execute(sql, [_array_literal(col, kind) for col, (_, kind) in
                                  zip(zip(*chunk, strict=True), columns, strict=True)])
                if returning:
                    out += [r[0] for r in cur.fetchall()]
        return out
    per = max(1, _SQLITE_PARAMS // len(columns))
    one = "(" + ", ".join("?" * len(columns)) + ")"
    for lo in range(0, len(rows), per):
        chunk = rows[lo:lo + per]
        sql = f"INSERT INTO {table} ({names}) VALUES " + ", ".join([one] * len(chunk)) + tail
        result = conn.exec_driver_sql(sql, tuple(v for r in chunk for v in r))
        if returning:
            out += [r[0] for r in result]
    return out
