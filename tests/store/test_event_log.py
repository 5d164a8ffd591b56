"""PostgresEventBus on a real PostgreSQL: two instances (each its own engine, LISTEN connection
and bus) on one database, as two servers would be. A subscriber on either gets every event of a
session, in order, quickly; Last-Event-ID resumes on the other; storage is bounded; a lost
LISTEN connection is reopened and nothing is missed; listeners get this instance's events or
every instance's."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import func, select, text

from harness.postgres import PostgresServer
from interview.config import to_async_database_url
from interview.events import (
    MAX_EVENTS_PER_SESSION,
    Event,
    InProcessEventBus,
    InterviewerSpeaking,
    SpeakingState,
    StatusChanged,
)
from interview.store import SessionRow, Store
from interview.store.event_log import (
    LOCK_NAMESPACE,
    PostgresEventBus,
    _lock_key,
    event_bus_for,
)
from interview.store.tables import EventRow

WAIT = 10.0  # seconds; only ever reached if something is broken
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
SESSIONS = ("s1", "s2", "s3")


def tick(n: int, session_index: int = 0) -> InterviewerSpeaking:
    """A small event that carries a number (and, in `seconds`, who published it)."""
    return InterviewerSpeaking(state=SpeakingState.queued, index=n, seconds=session_index)


def number(event: Event) -> int:
    assert isinstance(event.body, InterviewerSpeaking) and event.body.index is not None
    return event.body.index


def publisher(event: Event) -> float | None:
    assert isinstance(event.body, InterviewerSpeaking)
    return event.body.seconds


def session_row(session_id: str) -> SessionRow:
    return SessionRow(
        id=session_id,
        token_hash="0" * 64,
        user_id="u",
        plan_id="p",
        meta={},
        status="created",
        created_at=T0,
        expires_at=T0 + timedelta(hours=1),
        question_index=0,
        follow_ups_used=0,
        connection_state="none",
    )


@pytest.fixture
async def database(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A migrated database with the sessions of SESSIONS; its async URL."""
    url = to_async_database_url(postgres_server.create_database())
    store = Store(url)
    await store.migrate()
    for session_id in SESSIONS:
        await store.insert_session(session_row(session_id))
    await store.dispose()
    yield url


@asynccontextmanager
async def instance(url: str) -> AsyncIterator[PostgresEventBus]:
    """One instance's bus: its own engine and LISTEN connection, as a server process has."""
    store = Store(url)
    bus = event_bus_for(store.engine)
    assert isinstance(bus, PostgresEventBus)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.stop()
        await store.dispose()


class Follower:
    """A subscription read in a task: the events, and when each came (perf_counter)."""

    def __init__(self, bus: PostgresEventBus, session_id: str, after_id: int = 0) -> None:
        self.events: list[Event] = []
        self.arrived: list[float] = []
        self.changed = asyncio.Event()
        self._task = asyncio.create_task(self._follow(bus, session_id, after_id))

    async def _follow(self, bus: PostgresEventBus, session_id: str, after_id: int) -> None:
        async for event in bus.subscribe(session_id, after_id=after_id):
            self.events.append(event)
            self.arrived.append(time.perf_counter())
            self.changed.set()

    async def count(self, n: int) -> list[Event]:
        """The events, once there are `n` (WAIT at most)."""
        async with asyncio.timeout(WAIT):
            while len(self.events) < n:
                self.changed.clear()
                await self.changed.wait()
        return self.events

    async def close(self) -> None:
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


class Heard(list[Event]):
    """A listener: the events it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def __call__(self, event: Event) -> None:
        self.append(event)
        self.changed.set()

    async def reach(self, n: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self) < n:
                self.changed.clear()
                await self.changed.wait()


async def stored_rows(url: str, session_id: str) -> int:
    store = Store(url)
    try:
        async with store.engine.connect() as conn:
            count = await conn.scalar(select(func.count()).where(EventRow.session_id == session_id))
        return int(count or 0)
    finally:
        await store.dispose()


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def admin(url: str) -> psycopg.Connection:
    """A connection to the server's `postgres` database, to act on the test's database."""
    return psycopg.connect(libpq(url).rsplit("/", 1)[0] + "/postgres", autocommit=True)


def allow_connections(conn: psycopg.Connection, url: str, allowed: bool) -> None:
    """Let no new connection into the database (a reconnection must back off and retry)."""
    conn.execute(
        psycopg.sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
            psycopg.sql.Identifier(url.rsplit("/", 1)[1]),
            psycopg.sql.SQL("true" if allowed else "false"),
        )
    )


async def test_the_database_picks_the_bus(database: str, tmp_path) -> None:
    postgres = Store(database)
    sqlite = Store(to_async_database_url(f"sqlite:///{tmp_path}/spool.db"))
    try:
        assert isinstance(event_bus_for(postgres.engine), PostgresEventBus)
        assert isinstance(event_bus_for(sqlite.engine), InProcessEventBus)
    finally:
        await postgres.dispose()
        await sqlite.dispose()


async def test_a_subscriber_on_another_instance_gets_every_event_in_order_within_a_second(
    database: str, record_property: Callable[[str, object], None]
) -> None:
    async with instance(database) as a, instance(database) as b:
        follower = Follower(b, "s1")
        a.publish("s1", tick(-1))  # the subscription is live once this one is through
        await follower.count(1)
        sent: dict[int, float] = {}
        for n in range(300):
            sent[n] = time.perf_counter()
            a.publish("s1", tick(n))
            # Mostly one at a time, as an interview publishes; every 50th starts a burst.
            await asyncio.sleep(0 if n % 50 < 10 else 0.005)
        events = (await follower.count(301))[1:]
        assert [number(e) for e in events] == list(range(300))
        assert [e.id for e in events] == sorted({e.id for e in events})
        latencies = [
            (arrived - sent[number(e)]) * 1000
            for e, arrived in zip(events, follower.arrived[1:], strict=True)
        ]
        paced = [ms for n, ms in enumerate(latencies) if n % 50 >= 10]
        for name, sample in (("all", latencies), ("one at a time", paced)):
            p50 = statistics.median(sample)
            p95 = statistics.quantiles(sample, n=20)[-1]
            record_property(f"publish_to_other_instance_ms {name}", {"p50": p50, "p95": p95})
            print(
                f"\npublish -> delivery on the other instance ({name}, {len(sample)} events): "
                f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(sample):.1f} ms"
            )
        assert max(latencies) < 1000
        # What B delivered is what both instances read back.
        assert events == (await a.history("s1"))[1:] == (await b.history("s1"))[1:]
        await follower.close()


async def test_one_session_published_on_two_instances_is_in_one_order_for_everyone(
    database: str,
) -> None:
    async with instance(database) as a, instance(database) as b:
        followers = [Follower(bus, "s1") for bus in (a, b, a, b)]
        per_thread = 80
        threads = [
            threading.Thread(
                target=lambda bus=bus, who=who: [
                    bus.publish("s1", tick(n, who)) for n in range(per_thread)
                ]
            )
            for who, bus in enumerate((a, b, a, b))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            await asyncio.to_thread(thread.join, WAIT)
        total = per_thread * len(threads)
        seen = [await follower.count(total) for follower in followers]
        first = seen[0]
        assert len(first) == total
        for other in seen[1:]:
            assert other == first  # the same events, in the same order, on both instances
        assert [e.id for e in first] == sorted({e.id for e in first})
        # Each publisher's events keep the order it published them in.
        for who in range(len(threads)):
            assert [number(e) for e in first if publisher(e) == who] == list(range(per_thread))
        assert first == await b.history("s1")
        for follower in followers:
            await follower.close()


async def test_last_event_id_resumes_on_the_other_instance(database: str) -> None:
    async with instance(database) as a, instance(database) as b:
        on_a = Follower(a, "s1")
        for n in range(10):
            a.publish("s1", tick(n))
        seen = (await on_a.count(10))[:4]
        await on_a.close()  # the client leaves A after the fourth event...
        for n in range(10, 20):
            bus = a if n % 2 else b
            bus.publish("s1", tick(n))
            await bus.flush()  # so the numbers are in order across the instances too
        on_b = Follower(b, "s1", after_id=seen[-1].id)  # ...and comes back through B
        rest = await on_b.count(16)
        for n in range(20, 25):
            a.publish("s1", tick(n))
        rest = await on_b.count(21)
        assert [number(e) for e in seen + rest] == list(range(25))
        assert seen + rest == await a.history("s1")
        await asyncio.sleep(0.2)
        assert len(on_b.events) == 21  # nothing twice
        await on_b.close()


async def test_each_session_keeps_its_newest_events(database: str) -> None:
    async with instance(database) as a, instance(database) as b:
        follower = Follower(a, "s1")
        extra = 30
        total = MAX_EVENTS_PER_SESSION + extra
        for n in range(total):
            (a if n % 3 else b).publish("s1", tick(n))
        a.publish("s2", tick(0))
        await a.flush()
        await b.flush()
        published = await follower.count(total)  # live, every one
        assert await stored_rows(database, "s1") == MAX_EVENTS_PER_SESSION
        assert await stored_rows(database, "s2") == 1  # a busy session does not crowd out another
        # The newest (by id: the order every instance delivered them in) are kept.
        assert await b.history("s1") == await a.history("s1") == published[extra:]
        await follower.close()


async def test_events_go_with_their_session(database: str) -> None:
    async with instance(database) as a:
        a.publish("s3", tick(0))
        await a.flush()
        assert await stored_rows(database, "s3") == 1
        store = Store(database)
        async with store.engine.begin() as conn:
            await conn.execute(text("DELETE FROM interview_sessions WHERE id = 's3'"))
        await store.dispose()
        assert await stored_rows(database, "s3") == 0
        # An event of a session that is gone is dropped, and the writer goes on.
        a.publish("s3", tick(1))
        a.publish("s1", tick(2))
        await a.flush()
        assert await a.history("s3") == []
        assert [number(e) for e in await a.history("s1")] == [2]


async def test_publish_never_waits_for_the_database(database: str) -> None:
    async with instance(database) as a, instance(database) as b:
        follower = Follower(b, "s1")
        # Another transaction holds the session's event lock: the writer must wait for it.
        with psycopg.connect(libpq(database)) as blocker:
            blocker.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_NAMESPACE, _lock_key("s1"))
            )
            started = time.perf_counter()
            for n in range(100):
                a.publish("s1", tick(n))
            assert time.perf_counter() - started < 0.5  # queued, not stored
            await asyncio.sleep(0.3)
            assert follower.events == []  # the writer waits for the lock...
            blocker.rollback()
        events = await follower.count(100)  # ...then stores them all, in order
        assert [number(e) for e in events] == list(range(100))
        await follower.close()


async def test_listeners_get_this_instances_events_or_every_instances(database: str) -> None:
    async with instance(database) as a, instance(database) as b:
        local, everywhere, b_local = Heard(), Heard(), Heard()
        a.add_listener(local)
        a.add_listener(everywhere, everywhere=True)
        b.add_listener(b_local)
        b.publish("s1", StatusChanged(status="ended", reason="candidate"))
        await b.flush()
        a.publish("s2", tick(1))
        await a.flush()
        await everywhere.reach(2)
        assert [e.type for e in b_local] == ["status"]
        assert [e.type for e in local] == ["speaking"]
        assert [e.type for e in everywhere] == ["status", "speaking"]
        assert everywhere == b_local + local  # the same stored events, ids and all
        await asyncio.sleep(0.2)
        assert len(everywhere) == 2 and len(local) == 1


async def test_a_lost_listen_connection_is_reopened_and_nothing_is_missed(
    database: str,
) -> None:
    async with instance(database) as a, instance(database) as b:
        follower = Follower(b, "s1")
        everywhere = Heard()
        b.add_listener(everywhere, everywhere=True)
        for n in range(5):
            a.publish("s1", tick(n))
        await follower.count(5)
        pid = b.notifications.backend_pid
        with admin(database) as server:
            # No new connection for a while, so B's reconnection has to back off and retry.
            allow_connections(server, database, False)
            server.execute("SELECT pg_terminate_backend(%s)", (pid,))
            for n in range(5, 25):  # published while B hears nothing
                a.publish("s1", tick(n))
                a.publish("s2", tick(n))
            await a.flush()
            await asyncio.sleep(0.5)
            assert not b.notifications.connected
            allow_connections(server, database, True)
        for n in range(25, 30):
            a.publish("s1", tick(n))
        events = await follower.count(30)
        assert [number(e) for e in events] == list(range(30))
        assert b.notifications.reconnects == 1 and b.notifications.backend_pid != pid
        await everywhere.reach(50)
        await asyncio.sleep(0.2)
        # Every instance's events, each once: the five before, the forty during, the five after.
        assert sorted(e.id for e in everywhere) == sorted({e.id for e in everywhere})
        assert [number(e) for e in everywhere if e.session_id == "s2"] == list(range(5, 25))
        assert len(everywhere) == 50
        await follower.close()


async def test_own_events_reach_listeners_while_the_listen_connection_is_down(
    database: str,
) -> None:
    async with instance(database) as a:
        local = Heard()
        a.add_listener(local)
        follower = Follower(a, "s1")
        a.publish("s1", tick(0))
        await follower.count(1)
        with admin(database) as server:
            allow_connections(server, database, False)
            server.execute("SELECT pg_terminate_backend(%s)", (a.notifications.backend_pid,))
            await asyncio.sleep(0.2)
            assert not a.notifications.connected
            a.publish("s1", tick(1))
            # Stored through the pool's open connection; flushed without waiting for LISTEN.
            await a.flush()
            assert [number(e) for e in local] == [0, 1]
            assert len(follower.events) == 1
            allow_connections(server, database, True)
        # The subscription gets it after the reconnection; the listener does not get it twice.
        assert [number(e) for e in await follower.count(2)] == [0, 1]
        a.publish("s1", tick(2))
        assert [number(e) for e in await follower.count(3)] == [0, 1, 2]
        await a.flush()
        assert [number(e) for e in local] == [0, 1, 2]
        await follower.close()


async def test_an_event_this_version_cannot_read_is_skipped(database: str) -> None:
    # A newer instance's event type, during a rolling deploy.
    async with instance(database) as a:
        follower = Follower(a, "s1")
        a.publish("s1", tick(0))
        await a.flush()
        store = Store(database)
        async with store.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO interview_events (session_id, type, body, created_at) VALUES"
                    " ('s1', 'future', '{\"type\": \"future\"}', now())"
                )
            )
            await conn.execute(text("SELECT pg_notify('interview_events', 's1 ' || lastval())"))
        await store.dispose()
        a.publish("s1", tick(1))
        assert [number(e) for e in await follower.count(2)] == [0, 1]
        assert [number(e) for e in await a.history("s1")] == [0, 1]
        await follower.close()
