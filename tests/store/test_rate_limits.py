"""The `limits` storage on a real PostgreSQL (interview.store.rate_limits): a window counts every
hit exactly once however many race, on one engine or two (two instances); it ends when its time
is up and a new one begins; its reset time comes from the database's clock; the sweep deletes
only windows that have passed; and the library's fixed-window limiter on it lets exactly the
limit through."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from limits import parse
from limits.aio.strategies import FixedWindowRateLimiter
from sqlalchemy import select, text

from harness.postgres import PostgresServer
from interview.config import to_async_database_url
from interview.store import Store
from interview.store.rate_limits import PostgresRateLimitStorage
from interview.store.tables import RateLimitRow


@pytest.fixture
async def url(postgres_server: PostgresServer) -> str:
    """A migrated database's async URL."""
    url = to_async_database_url(postgres_server.create_database())
    store = Store(url)
    await store.migrate()
    await store.dispose()
    return url


@pytest.fixture
async def storage(url: str) -> AsyncIterator[PostgresRateLimitStorage]:
    store = Store(url, pool_size=25, max_overflow=30)
    yield PostgresRateLimitStorage(store.engine)
    await store.dispose()


async def rows(storage: PostgresRateLimitStorage) -> dict[str, int]:
    async with storage.engine.connect() as conn:
        found = await conn.execute(select(RateLimitRow.key, RateLimitRow.count))
        return {key: count for key, count in found.all()}


async def test_concurrent_hits_each_get_their_own_count(storage: PostgresRateLimitStorage):
    counts = await asyncio.gather(*(storage.incr("k", 60) for _ in range(50)))
    assert sorted(counts) == list(range(1, 51))
    assert await storage.get("k") == 50
    assert await rows(storage) == {"k": 50}


async def test_fifty_concurrent_hits_let_exactly_the_limit_through(storage):
    limiter = FixedWindowRateLimiter(storage)
    item = parse("20/minute")
    allowed = await asyncio.gather(*(limiter.hit(item, "start", "203.0.113.7") for _ in range(50)))
    assert allowed.count(True) == 20
    assert allowed.count(False) == 30
    # Another client has a window of its own.
    assert await limiter.hit(item, "start", "203.0.113.8")


async def test_two_instances_count_into_one_window(url: str):
    """Two engines, as two server processes have: 50 hits between them, 20 let through."""
    stores = [Store(url, pool_size=25, max_overflow=0) for _ in range(2)]
    try:
        limiters = [FixedWindowRateLimiter(PostgresRateLimitStorage(s.engine)) for s in stores]
        item = parse("20/minute")
        allowed = await asyncio.gather(
            *(limiters[i % 2].hit(item, "answer", "198.51.100.1") for i in range(50))
        )
        assert allowed.count(True) == 20
    finally:
        for store in stores:
            await store.dispose()


async def test_a_window_ends_and_a_new_one_begins(storage: PostgresRateLimitStorage):
    assert await storage.incr("k", 1) == 1
    assert await storage.incr("k", 1) == 2
    await asyncio.sleep(1.1)
    assert await storage.get("k") == 0  # passed: nothing counted any more
    assert await storage.incr("k", 1) == 1  # a new window, from one
    assert await storage.get("k") == 1


async def test_the_reset_time_is_the_windows_end(storage: PostgresRateLimitStorage):
    before = time.time()
    await storage.incr("k", 30)
    reset = await storage.get_expiry("k")
    assert before + 29 < reset <= time.time() + 30
    # A later hit in the same window does not move its end.
    await asyncio.sleep(0.3)
    await storage.incr("k", 30)
    assert await storage.get_expiry("k") == pytest.approx(reset, abs=0.05)


async def test_the_reset_time_follows_the_database_clock(storage: PostgresRateLimitStorage):
    """A window made 50 s ago by the database's clock (another instance, whatever its own clock
    says) ends 10 s from now."""
    async with storage.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO interview_rate_limits (key, count, expires_at) "
                "VALUES ('k', 3, now() + interval '10 seconds')"
            )
        )
    assert await storage.get_expiry("k") == pytest.approx(time.time() + 10, abs=0.5)
    assert await storage.incr("k", 60) == 4


async def test_the_sweep_deletes_only_passed_windows(storage: PostgresRateLimitStorage):
    await storage.incr("old", 1)
    await storage.incr("current", 60)
    await asyncio.sleep(1.1)
    assert await storage.sweep() == 1
    assert await rows(storage) == {"current": 1}
    assert await storage.sweep() == 0


async def test_a_hit_sweeps_passed_windows_in_the_background(storage: PostgresRateLimitStorage):
    await storage.incr("old", 1)  # the first hit of this process sweeps (nothing yet)
    await asyncio.sleep(1.1)
    storage._swept_at = float("-inf")  # as if SWEEP_SECONDS had passed
    await storage.incr("new", 60)
    assert storage._sweep is not None
    await storage._sweep
    assert await rows(storage) == {"new": 1}


async def test_clear_reset_and_check(storage: PostgresRateLimitStorage):
    await storage.incr("a", 60)
    await storage.incr("b", 60)
    await storage.clear("a")
    assert await rows(storage) == {"b": 1}
    assert await storage.reset() == 1
    assert await rows(storage) == {}
    assert await storage.check()


async def test_an_unreachable_database_is_an_error_the_limiter_can_catch():
    """Nothing listens on the port: the storage raises a database error (the service lets the
    request through, tests/api/test_limits.py), and check() says False."""
    store = Store(to_async_database_url("postgresql://postgres@127.0.0.1:9/none"))
    storage = PostgresRateLimitStorage(store.engine)
    try:
        assert not await storage.check()
        with pytest.raises(storage.base_exceptions):
            await storage.incr("k", 60)
    finally:
        await store.dispose()
