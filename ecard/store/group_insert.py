"""Group commit for append-only records written on hot paths (one row per online verification).

Rows of concurrent requests go to the database in one multi-row INSERT, one transaction: each
caller still waits until its own row is committed before it answers (nothing is acknowledged and
then lost), but a busy worker pays one commit (one fsync on SQLite) per batch instead of per row.
A batch forms while the previous one is being written, so an idle service writes at once and adds
no latency.
"""

from __future__ import annotations

import asyncio

from piccolo.table import Table

#: rows per statement: far below SQLite's bound-parameter limit for any table of this service
MAX_BATCH = 500


class GroupInsert:
    """One per worker and table.  ``await add(row)`` returns once the row is committed, or raises
    what the write raised (every row of a failed batch gets the error; none of them was written)."""

    def __init__(self, table: type[Table]) -> None:
        self._table = table
        self._pending: list[tuple[Table, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def add(self, row: Table) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, done))
        if self._writer is None:
            # a task of its own: a caller that goes away (client disconnect) does not cancel the
            # write of the other callers' rows
            self._writer = asyncio.create_task(self._write_all())
        await asyncio.shield(done)

    async def _write_all(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    await self._table.insert(*(row for row, _ in batch)).run()
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
