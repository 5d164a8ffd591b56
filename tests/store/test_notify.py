"""Notifications on a real PostgreSQL: payloads to their channel's callbacks in order, channels
added while running, and a lost connection reopened with backoff and reported."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest

from harness.postgres import PostgresServer
from interview.store.notify import POLL_SECONDS, Notifications, libpq_url

WAIT = 10.0  # seconds; only ever reached if something is broken


class Payloads(list[str]):
    """A callback: the payloads it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def __call__(self, payload: str) -> None:
        self.append(payload)
        self.changed.set()

    async def reach(self, n: int) -> list[str]:
        async with asyncio.timeout(WAIT):
            while len(self) < n:
                self.changed.clear()
                await self.changed.wait()
        return self


@pytest.fixture
def database(postgres_server: PostgresServer) -> str:
    return postgres_server.create_database()


@pytest.fixture
async def notifications(database: str) -> AsyncIterator[Notifications]:
    listener = Notifications(database)
    yield listener
    await listener.stop()


def notify(url: str, channel: str, *payloads: str) -> None:
    """NOTIFY from another connection, one transaction per payload."""
    with psycopg.connect(url, autocommit=True) as conn:
        for payload in payloads:
            conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


def test_the_libpq_url_is_the_databases_without_the_driver() -> None:
    assert (
        libpq_url("postgresql+psycopg://app:p%40ss@db.example:5433/spool?sslmode=require")
        == "postgresql://app:p%40ss@db.example:5433/spool?sslmode=require"
    )


async def test_payloads_reach_their_channels_callbacks_in_order(
    database: str, notifications: Notifications
) -> None:
    first, second, other = Payloads(), Payloads(), Payloads()
    notifications.listen("alpha", first)
    notifications.listen("alpha", second)
    notifications.listen("beta", other)
    await notifications.start()
    await asyncio.to_thread(notify, database, "alpha", *[str(n) for n in range(50)])
    await asyncio.to_thread(notify, database, "beta", "b")
    assert await first.reach(50) == [str(n) for n in range(50)]
    assert await second.reach(50) == first
    assert await other.reach(1) == ["b"]


async def test_a_channel_added_while_running_is_listened_to(
    database: str, notifications: Notifications
) -> None:
    await notifications.start()
    late = Payloads()
    notifications.listen("late", late)
    await asyncio.sleep(POLL_SECONDS * 2.5)
    await asyncio.to_thread(notify, database, "late", "here")
    assert await late.reach(1) == ["here"]


async def test_a_lost_connection_is_reopened_with_backoff_and_reported(
    postgres_server: PostgresServer, database: str, notifications: Notifications
) -> None:
    heard = Payloads()
    reconnected = asyncio.Event()
    notifications.listen("alpha", heard)
    notifications.on_reconnect(reconnected.set)
    await notifications.start()
    await asyncio.to_thread(notify, database, "alpha", "before")
    await heard.reach(1)
    name = database.rsplit("/", 1)[1]
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        # New connections refused for a while: the listener must retry, then get back in.
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(%s)", (notifications.backend_pid,))
        await asyncio.sleep(1.0)
        assert not notifications.connected and not reconnected.is_set()
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    async with asyncio.timeout(WAIT):
        await reconnected.wait()
    assert notifications.connected and notifications.reconnects == 1
    await asyncio.to_thread(notify, database, "alpha", "after")
    assert await heard.reach(2) == ["before", "after"]  # listening again, on the new connection
