"""The `limits` library's async storage on PostgreSQL: fixed-window counters in
`interview_rate_limits`, shared by every instance, so a client's limit holds whichever instance
it reaches.

One counter is one row (`key`, `count`, `expires_at`). A hit is one atomic statement, an
`INSERT ... ON CONFLICT DO UPDATE ... RETURNING count` that starts a new window when the row's
has passed: concurrent hits on any instance each get a distinct count, so exactly the limit is
let through. Time is the database's (`now()`), the one clock every instance shares. Rows of
passed windows are deleted in the background, at most once per SWEEP_SECONDS per instance.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import structlog
from limits.aio.storage import Storage
from sqlalchemy import case, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from interview.store.tables import RateLimitRow

log = structlog.get_logger(__name__)

SWEEP_SECONDS = 60.0
# Rows deleted by one sweep statement: a short transaction even after a flood of clients.
SWEEP_BATCH = 1000

_row = RateLimitRow
_now = func.now()


class PostgresRateLimitStorage(Storage):
    """Fixed windows (limits' FixedWindowRateLimiter) in the service's PostgreSQL database.

    Built on the service's engine rather than from a storage URI, so it shares its pool.
    """

    STORAGE_SCHEME = None  # never built from a URI by the library

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__()
        self.engine = engine
        self._swept_at = float("-inf")
        self._sweep: asyncio.Task[None] | None = None

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return (SQLAlchemyError, OSError)

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        """Add `amount` to the key's window (a new one of `expiry` seconds if it has passed);
        returns the window's count with it."""
        passed = _row.expires_at <= _now
        statement = insert(_row).values(
            key=key, count=amount, expires_at=_now + timedelta(seconds=expiry)
        )
        new = statement.excluded
        # In SET, the table's columns are the row as it was: both read the same window.
        upsert = statement.on_conflict_do_update(
            index_elements=[_row.key],
            set_={
                "count": case((passed, new.count), else_=_row.count + new.count),
                "expires_at": case((passed, new.expires_at), else_=_row.expires_at),
            },
        ).returning(_row.count)
        async with self.engine.begin() as conn:
            count = (await conn.execute(upsert)).scalar_one()
        self._maybe_sweep()
        return int(count)

    async def get(self, key: str) -> int:
        """The count of the key's current window; 0 when it has passed or never began."""
        async with self.engine.connect() as conn:
            count = await conn.scalar(
                select(_row.count).where(_row.key == key, _row.expires_at > _now)
            )
        return int(count or 0)

    async def get_expiry(self, key: str) -> float:
        """When the key's window ends, as a time.time() of this process: the database says how
        far away it is, so a skew between the two clocks does not move it."""
        async with self.engine.connect() as conn:
            remaining = await conn.scalar(
                select(func.extract("epoch", _row.expires_at - _now)).where(_row.key == key)
            )
        return time.time() + max(0.0, float(remaining or 0.0))

    async def check(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError):
            return False
        return True

    async def reset(self) -> int | None:
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(_row))
        return int(result.rowcount)

    async def clear(self, key: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(_row).where(_row.key == key))

    async def sweep(self) -> int:
        """Delete the rows of windows that have passed; returns how many.

        Rows another transaction holds (a hit renewing one, another instance's sweep) are
        skipped rather than waited for: no two sweeps deadlock, and a renewed row stays.
        """
        deleted = 0
        while True:
            passed = (
                select(_row.key)
                .where(_row.expires_at <= _now)
                .limit(SWEEP_BATCH)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            async with self.engine.begin() as conn:
                result = await conn.execute(delete(_row).where(_row.key.in_(passed)))
            deleted += int(result.rowcount)
            if result.rowcount < SWEEP_BATCH:
                return deleted

    def _maybe_sweep(self) -> None:
        started = time.monotonic()
        if started - self._swept_at < SWEEP_SECONDS:
            return
        self._swept_at = started
        self._sweep = asyncio.get_running_loop().create_task(self._sweep_logged())

    async def _sweep_logged(self) -> None:
        try:
            deleted = await self.sweep()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("rate_limit_sweep_failed", error=type(exc).__name__)
            return
        if deleted:
            log.info("rate_limits_swept", deleted=deleted)
