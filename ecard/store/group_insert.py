"""Group commit for append-only records written on hot paths (one row per online verification).

Rows of concurrent requests go to the database in one multi-row INSERT, one transaction: each
caller still waits until its own row is committed before it answers (nothing is acknowledged and
then lost), but a busy worker pays one commit (one fsync on SQLite) per batch instead of per row.
A batch forms while the previous one is being written, so an idle service writes at once and adds
no latency.  Rows are plain value tuples written by one parameterised statement: building a
piccolo ``Table`` object and its INSERT per row cost more than the verification they record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from piccolo.columns import Column
from piccolo.querystring import QueryString
from piccolo.table import Table

#: rows per statement: far below SQLite's bound-parameter limit for any table of this service
MAX_BATCH = 500


class GroupInsert:
    """One per worker and table.  ``await add(values)`` (in the order of ``columns``) returns once
    the row is committed, or raises what the write raised (every row of a failed batch gets the
    error; none of them was written)."""

    def __init__(self, table: type[Table], columns: Sequence[Column]) -> None:
        self._table = table
        # identifiers from the table's own definition; the values are bound parameters
        self._into = (
            f"INSERT INTO {table._meta.tablename} "  # noqa: S608
            f"({', '.join(c._meta.db_column_name for c in columns)}) VALUES "
        )
        self._width = len(columns)
        self._pending: list[tuple[tuple[Any, ...], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def add(self, row: tuple[Any, ...]) -> None:
        if len(row) != self._width:
            raise ValueError(f"{self._width} values expected, got {len(row)}")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, done))
        if self._writer is None:
            # a task of its own: a caller that goes away (client disconnect) cancels only its own
            # wait, never the write of its row or of the other callers' rows
            self._writer = asyncio.create_task(self._write_all())
        await done

    async def _write_all(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    values = [value for row, _ in batch for value in row]
                    await self._table._meta.db.run_querystring(
                        _Rows(self._into, self._width, values)
                    )
                except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._writer = None


class _Rows(QueryString):
    """Rows for an INSERT, compiled without piccolo's template parsing: a ``QueryString`` splits
    its template into one fragment per value on every run, which for a batch cost as much as
    the rest of the write."""

    __slots__ = ("_width",)

    def __init__(self, into: str, width: int, values: list[Any]) -> None:
        super().__init__(into, query_type="insert")
        self._width = width
        self.args = values

    def compile_string(self, engine_type: str = "postgres") -> tuple[str, list[Any]]:
        return self.template + _values_clause(
            engine_type, self._width, len(self.args) // self._width
        ), list(self.args)


@lru_cache(maxsize=64)
def _values_clause(engine_type: str, width: int, rows: int) -> str:
    if engine_type == "sqlite":
        row = "(" + ", ".join("?" * width) + ")"
        return ", ".join([row] * rows)
    numbers = iter(range(1, width * rows + 1))
    return ", ".join(
        "(" + ", ".join(f"${next(numbers)}" for _ in range(width)) + ")" for _ in range(rows)
    )
