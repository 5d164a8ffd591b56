"""One decision at a time per interview session, on every instance: a lock the database holds.

On PostgreSQL a session-level advisory lock, taken on a connection of its own and held while the
decision's writes commit on others (so an answer is durable before the interviewer is asked,
yet no other instance can decide for the session meanwhile); a process that dies releases it
with its connection. Coroutines of one process queue on an asyncio lock first, so a busy
session holds at most one waiting connection per instance. SQLite serves a single instance:
the asyncio lock alone.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# A decision waits this long for another instance's before giving up (a reply with its model's
# retries takes at most LLM_TURN_BUDGET_SECONDS; a stuck holder is a dead connection, which
# PostgreSQL releases).
LOCK_WAIT_SECONDS = 30.0


class SessionBusy(Exception):
    """Another decision about the session held its lock for too long; nothing was changed."""


class SessionLocks:
    """The per-process locks: enough for one instance (SQLite)."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @asynccontextmanager
    async def hold(self, session_id: str) -> AsyncIterator[None]:
        lock = self._locks.get(session_id)
        if lock is None:
            lock = self._locks[session_id] = asyncio.Lock()
        async with lock:
            yield

    @asynccontextmanager
    async def try_hold(self, name: str) -> AsyncIterator[bool]:
        """Hold the lock called `name` if it is free (True), else go on without it (False):
        for work one instance does for all, such as writing a report."""
        lock = self._locks.get(name)
        if lock is None:
            lock = self._locks[name] = asyncio.Lock()
        if lock.locked():
            yield False
            return
        async with lock:
            yield True


class PostgresSessionLocks(SessionLocks):
    """The per-process lock, then the session's advisory lock in PostgreSQL."""

    def __init__(
        self, engine: AsyncEngine, wait_seconds: float = LOCK_WAIT_SECONDS, holders: int = 10
    ) -> None:
        super().__init__()
        self.engine = engine
        self.wait_ms = int(wait_seconds * 1000)
        # A holder keeps one pooled connection and takes another for each write: were every
        # connection of the pool held by a lock, every holder would wait for a write
        # connection for ever. At most half the pool holds locks.
        self._holders = asyncio.Semaphore(holders)

    @asynccontextmanager
    async def hold(self, session_id: str) -> AsyncIterator[None]:
        async with super().hold(session_id), self._holders, self.engine.connect() as conn:
            # Autocommit: the lock belongs to the connection, not to a transaction left open.
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            key = {"session_id": session_id}
            try:
                await conn.execute(text(f"SET lock_timeout = {self.wait_ms}"))
                await conn.execute(
                    text("SELECT pg_advisory_lock(hashtextextended(:session_id, 0))"), key
                )
            except OperationalError as exc:
                if "lock timeout" in str(exc):
                    raise SessionBusy(session_id) from exc
                raise
            try:
                yield
            finally:
                await self._release(conn, key)

    @asynccontextmanager
    async def try_hold(self, name: str) -> AsyncIterator[bool]:
        async with super().try_hold(name) as here:
            if not here:
                yield False
                return
            async with self._holders, self.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                key = {"session_id": name}
                taken = await conn.scalar(
                    text("SELECT pg_try_advisory_lock(hashtextextended(:session_id, 0))"), key
                )
                if not taken:
                    yield False
                    return
                try:
                    yield True
                finally:
                    await self._release(conn, key)

    @staticmethod
    async def _release(conn: AsyncConnection, key: dict[str, str]) -> None:
        try:
            await conn.execute(
                text("SELECT pg_advisory_unlock(hashtextextended(:session_id, 0))"), key
            )
            await conn.execute(text("RESET lock_timeout"))
        except DBAPIError:
            # The database went away: it released the lock with the connection, which must not
            # go back to the pool.
            await conn.invalidate()
