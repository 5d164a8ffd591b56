"""The live events of every instance: stored in PostgreSQL and fanned out with LISTEN/NOTIFY.

`PostgresEventBus` is the `EventBus` of a service on PostgreSQL, where any number of instances
serve one database:
- publish() only queues the event (it is called from threads and from sync code, and never
  waits for the database); one writer task per process stores the queue in order, a batch per
  transaction: each event inserted into `interview_events` under `pg_advisory_xact_lock` of its
  session (so, per session, commit order is id order on every instance), followed by
  `NOTIFY interview_events, '<session_id> <id>'`; the session's older events are pruned to the
  newest MAX_EVENTS_PER_SESSION in the same transaction;
- every instance LISTENs (interview.store.notify) and hands each notified event to its own
  subscribers and listeners, in the order of the notifications (commit order): a subscription
  replays from the table (`id > Last-Event-ID`) and then follows, on whichever instance;
- listeners added plainly get the events this process published (the report writer: one
  instance writes a report); those added with `everywhere=True` get every instance's;
- after the LISTEN connection was lost, subscriptions re-read the table after the last event
  they yielded, and listeners get what was stored meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass

import psycopg
import structlog
from pydantic import ValidationError
from sqlalchemy import ColumnElement, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

from interview.events import (
    EVENT_BODY,
    MAX_EVENTS_PER_SESSION,
    Event,
    EventBus,
    InProcessEventBus,
    SessionEvent,
)
from interview.store.notify import Notifications, libpq_url
from interview.store.tables import EventRow

log = structlog.get_logger(__name__)

CHANNEL = "interview_events"
# pg_advisory_xact_lock(int, int): a key space of its own, apart from the one-bigint keys that
# serialize a session's state changes (interview.store.locks), which an event must not wait for.
LOCK_NAMESPACE = 0x45564E54  # "EVNT"
WRITE_BATCH = 100
# Events queued while the database cannot take them; beyond this, new ones are dropped (logged).
MAX_QUEUED = 20_000
STOP_FLUSH_SECONDS = 5.0
RETRY_MIN_SECONDS = 0.05
RETRY_MAX_SECONDS = 2.0
# Ids handed to listeners, remembered so a re-read after a reconnection gives none twice.
DELIVERED_MEMORY = 20_000
# After a reconnection, listeners get what was stored after (newest id notified - this): ids of
# transactions still open when the connection dropped may be lower than the newest notified.
RESYNC_ID_SLACK = 5_000

LOCK = text("SELECT pg_advisory_xact_lock(:namespace, :key)")
# Only while the session exists (its key held until the commit, so an erasure waits for the
# event and deletes it): an event of an erased interview inserts nothing and is dropped.
INSERT = text(
    "WITH stored AS ("
    " INSERT INTO interview_events (session_id, type, body, created_at)"
    " SELECT CAST(:session_id AS VARCHAR), :type, CAST(:body AS json), clock_timestamp()"
    " WHERE EXISTS (SELECT 1 FROM interview_sessions"
    "  WHERE id = CAST(:session_id AS VARCHAR) FOR KEY SHARE)"
    " RETURNING id, session_id)"
    " SELECT id, pg_notify(:channel, session_id || ' ' || id) FROM stored"
)
PRUNE = text(
    "DELETE FROM interview_events WHERE id IN ("
    " SELECT id FROM ("
    "  SELECT id, row_number() OVER (ORDER BY id DESC) AS newer"
    "  FROM interview_events WHERE session_id = :session_id) AS kept"
    " WHERE newer > :keep)"
)


def event_bus_for(engine: AsyncEngine) -> EventBus:
    """The bus for the service's database: PostgreSQL fans out to every instance; SQLite is one
    instance, whose events stay in the process."""
    if engine.dialect.name == "postgresql":
        url = libpq_url(engine.url.render_as_string(hide_password=False))
        return PostgresEventBus(engine, Notifications(url))
    return InProcessEventBus()


@dataclass
class _Queued:
    seq: int
    session_id: str
    body: SessionEvent


@dataclass
class _Stored:
    """An event this process stored, until it is delivered here."""

    seq: int
    event: Event
    committed: bool = False


class PostgresEventBus(EventBus):
    def __init__(self, engine: AsyncEngine, notifications: Notifications) -> None:
        super().__init__()
        self._engine = engine
        # The process's LISTEN connection; other parts may listen on it too.
        self.notifications = notifications
        notifications.listen(CHANNEL, self._notified)
        notifications.on_reconnect(self._reconnected)
        self._lock = threading.Lock()  # guards what publish() touches from any thread
        self._queue: deque[_Queued] = deque()
        self._seq = itertools.count(1)
        self._published = 0
        self._pending: set[int] = set()  # seqs published, not yet delivered here (or dropped)
        self._dropped = 0
        # The rest is touched on the loop only.
        self._stored: dict[int, _Stored] = {}  # by event id
        # Notified (session id, event id), in order; None: the connection was lost meanwhile.
        self._inbox: deque[tuple[str, int] | None] = deque()
        self._delivered: OrderedDict[int, None] = OrderedDict()
        self._queued = asyncio.Event()
        self._notices = asyncio.Event()
        self._progress = asyncio.Event()
        self._floor = 0  # the newest id when this process began to listen
        self._newest = 0  # the newest id notified
        self._tasks: list[asyncio.Task[None]] = []

    # EventBus

    def publish(self, session_id: str, body: SessionEvent) -> None:
        with self._lock:
            if len(self._queue) >= MAX_QUEUED:
                self._dropped += 1
                dropped = self._dropped
            else:
                seq = self._published = next(self._seq)
                self._queue.append(_Queued(seq, session_id, body))
                self._pending.add(seq)
                dropped = 0
        if dropped:
            if dropped == 1 or dropped % 1000 == 0:
                log.error("events_dropped_queue_full", dropped=dropped, queued=MAX_QUEUED)
            return
        self._set_on_loop(self._queued)

    async def history(self, session_id: str, after_id: int | None = None) -> list[Event]:
        query = select(EventRow.id, EventRow.session_id, EventRow.body).where(
            EventRow.session_id == session_id
        )
        if after_id is not None:
            query = query.where(EventRow.id > after_id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.order_by(EventRow.id))).all()
        return [event for event in (_event(*row) for row in rows) if event is not None]

    async def start(self) -> None:
        """Listen, then store and deliver; call once the schema is migrated. Idempotent."""
        if self._tasks:
            return
        if self._loop is None:
            self.bind_loop(asyncio.get_running_loop())
        await self.notifications.start()
        # Listeners get what is stored from now on, not the events of earlier runs.
        async with self._engine.connect() as conn:
            newest = await conn.scalar(select(func.coalesce(func.max(EventRow.id), 0)))
        self._floor = self._newest = max(self._newest, int(newest or 0))
        self._tasks = [
            asyncio.create_task(self._write(), name="events-writer"),
            asyncio.create_task(self._fan_out(), name="events-fan-out"),
        ]
        self._queued.set()  # what was published before start

    async def stop(self) -> None:
        if self._tasks:
            try:
                async with asyncio.timeout(STOP_FLUSH_SECONDS):
                    await self.flush()
            except TimeoutError:
                with self._lock:
                    log.warning(
                        "events_not_delivered_at_stop",
                        queued=len(self._queue),
                        undelivered=len(self._pending),
                    )
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.notifications.stop()

    def forget(self, session_id: str) -> None:
        pass  # nothing is kept here: the stored events are deleted with the session's rows

    async def flush(self) -> None:
        if not self._tasks:
            return  # not started: nothing is stored or delivered yet (nor will be by waiting)
        with self._lock:
            target = self._published
        while True:
            self._progress.clear()
            with self._lock:
                if not any(seq <= target for seq in self._pending):
                    return
            await self._progress.wait()

    # storing (the writer task)

    async def _write(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            while batch := self._take():
                await self._store(batch)

    def _take(self) -> list[_Queued]:
        with self._lock:
            return [self._queue.popleft() for _ in range(min(len(self._queue), WRITE_BATCH))]

    async def _store(self, batch: list[_Queued]) -> None:
        """Store the batch, retrying while the database is unreachable; an event it refuses
        (its session was deleted) is dropped."""
        retry = RETRY_MIN_SECONDS
        while True:
            try:
                await self._insert(batch)
                return
            except Exception as exc:
                if _transient(exc):
                    log.warning("events_store_retry", error=type(exc).__name__, events=len(batch))
                    await asyncio.sleep(retry)
                    retry = min(retry * 2, RETRY_MAX_SECONDS)
                    continue
                if len(batch) > 1:  # find the one refused; store the others
                    for queued in batch:
                        await self._store([queued])
                    return
                refused = batch[0]
                if isinstance(exc, IntegrityError):  # its session is gone, and its events with it
                    log.warning(
                        "event_not_stored",
                        session_id=refused.session_id,
                        event_type=refused.body.type,
                        error=str(exc.orig).splitlines()[0],
                    )
                else:
                    log.exception(
                        "event_not_stored",
                        session_id=refused.session_id,
                        event_type=refused.body.type,
                    )
                self._done(refused.seq)
                return

    async def _insert(self, batch: list[_Queued]) -> None:
        stored: list[_Stored] = []
        erased: list[int] = []  # seqs of events whose session is gone
        sessions = sorted({queued.session_id for queued in batch})
        try:
            async with self._engine.begin() as conn:
                # Always in one order, so two writers with the same sessions cannot deadlock.
                for key in sorted({_lock_key(session_id) for session_id in sessions}):
                    await conn.execute(LOCK, {"namespace": LOCK_NAMESPACE, "key": key})
                for queued in batch:
                    event_id = (
                        await conn.execute(
                            INSERT,
                            {
                                "session_id": queued.session_id,
                                "type": queued.body.type,
                                "body": queued.body.model_dump_json(),
                                "channel": CHANNEL,
                            },
                        )
                    ).scalar_one_or_none()
                    if event_id is None:
                        erased.append(queued.seq)
                        continue
                    # Known before the commit: its notification may come before commit returns.
                    entry = _Stored(queued.seq, Event(event_id, queued.session_id, queued.body))
                    self._stored[event_id] = entry
                    stored.append(entry)
                for session_id in sessions:
                    await conn.execute(
                        PRUNE, {"session_id": session_id, "keep": MAX_EVENTS_PER_SESSION}
                    )
        except BaseException:
            for entry in stored:
                self._stored.pop(entry.event.id, None)
            raise
        for entry in stored:
            entry.committed = True
        for seq in erased:
            self._done(seq)
        if not self.notifications.connected:
            # No notification will come until the connection is back: listeners need not wait.
            self._deliver_stranded()

    # delivering (the fan-out task)

    def _notified(self, payload: str) -> None:
        session_id, _, event_id = payload.rpartition(" ")
        try:
            notice = (session_id, int(event_id))
        except ValueError:
            log.warning("event_notification_malformed", payload=payload[:200])
            return
        self._inbox.append(notice)
        self._notices.set()

    def _reconnected(self) -> None:
        self._inbox.append(None)
        self._notices.set()

    async def _fan_out(self) -> None:
        while True:
            await self._notices.wait()
            self._notices.clear()
            while self._inbox:
                items = list(self._inbox)
                self._inbox.clear()
                try:
                    await self._deliver_inbox(items)
                except Exception:  # a bug here must not end delivery for the process
                    log.exception("events_fan_out_failed", notices=len(items))

    async def _deliver_inbox(self, items: list[tuple[str, int] | None]) -> None:
        run: list[tuple[str, int]] = []
        for item in items:
            if item is None:
                await self._deliver_notified(run)
                run = []
                await self._resync()
            else:
                run.append(item)
        await self._deliver_notified(run)

    async def _deliver_notified(self, notices: list[tuple[str, int]]) -> None:
        """Deliver notified events in the order of their notifications."""
        if not notices:
            return
        everywhere = bool(self._everywhere_listeners)
        own = {i: self._stored.pop(i) for _, i in notices if i in self._stored}
        wanted = [
            event_id
            for session_id, event_id in notices
            if event_id not in own and (everywhere or session_id in self._waiters)
        ]
        fetched = await self._fetch(EventRow.id.in_(wanted)) if wanted else {}
        for _session_id, event_id in notices:
            self._newest = max(self._newest, event_id)
            mine = own.get(event_id)
            event = mine.event if mine is not None else fetched.get(event_id)
            if event is not None:
                fresh = self._first_delivery(event_id)
                self._deliver(event, local=mine is not None and fresh, everywhere=fresh)
            if mine is not None:
                self._done(mine.seq)

    async def _resync(self) -> None:
        """After a reconnection: listeners get what was stored meanwhile; subscriptions re-read
        the table after their last event (exact: per session, ids are in commit order)."""
        self._deliver_stranded()
        if self._everywhere_listeners:
            low = max(self._floor, self._newest - RESYNC_ID_SLACK)
            for event in (await self._fetch(EventRow.id > low)).values():
                self._newest = max(self._newest, event.id)
                if self._first_delivery(event.id):
                    self._deliver(event, subscribers=False, local=False)
        self._resync_subscribers()

    def _deliver_stranded(self) -> None:
        """This process's stored events whose notifications were lost: to the listeners."""
        for event_id in sorted(self._stored):
            entry = self._stored[event_id]
            if entry.committed:
                del self._stored[event_id]
                if self._first_delivery(event_id):
                    self._deliver(entry.event, subscribers=False)
                self._done(entry.seq)

    async def _fetch(self, condition: ColumnElement[bool]) -> dict[int, Event]:
        """Stored events matching `condition`, by id in id order; retried while the database
        is unreachable."""
        query = (
            select(EventRow.id, EventRow.session_id, EventRow.body)
            .where(condition)
            .order_by(EventRow.id)
        )
        retry = RETRY_MIN_SECONDS
        while True:
            try:
                async with self._engine.connect() as conn:
                    rows = (await conn.execute(query)).all()
                events = (_event(*row) for row in rows)
                return {event.id: event for event in events if event is not None}
            except Exception as exc:
                if not _transient(exc):
                    log.exception("events_fetch_failed")
                    return {}
                log.warning("events_fetch_retry", error=type(exc).__name__)
                await asyncio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX_SECONDS)

    def _first_delivery(self, event_id: int) -> bool:
        if event_id in self._delivered:
            return False
        self._delivered[event_id] = None
        if len(self._delivered) > DELIVERED_MEMORY:
            self._delivered.popitem(last=False)
        return True

    def _done(self, seq: int) -> None:
        with self._lock:
            self._pending.discard(seq)
        self._progress.set()

    def _set_on_loop(self, flag: asyncio.Event) -> None:
        loop = self._loop
        if loop is None:
            return  # start() looks at the queue
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            flag.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the process is ending
                loop.call_soon_threadsafe(flag.set)


def _lock_key(session_id: str) -> int:
    """The session's key in LOCK_NAMESPACE (a collision only serializes two sessions)."""
    digest = hashlib.blake2b(session_id.encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big", signed=True)


def _event(event_id: int, session_id: str, body: object) -> Event | None:
    try:
        return Event(event_id, session_id, EVENT_BODY.validate_python(body))
    except ValidationError:
        # An event this version does not know (a newer instance's, during a rolling deploy).
        log.warning("event_unreadable", event_id=event_id, session_id=session_id)
        return None


def _transient(exc: BaseException) -> bool:
    """Whether waiting may help: the database is unreachable, restarting or overloaded."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(
            exc.orig, psycopg.OperationalError | psycopg.InterfaceError
        )
    return isinstance(exc, PoolTimeout | OSError | TimeoutError)
