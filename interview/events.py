"""Live events of each interview, for Server-Sent Events and for parts that react to them.

Each kind of event is a model with a `Literal` type; `SessionEvent` is their union, published in
/openapi.json (the web client's types are generated from it), so a renamed field or value breaks
the Python and the TypeScript builds alike.

Events are kept per session (the newest MAX_EVENTS_PER_SESSION) so a client that reconnects with
the id of the last event it saw (SSE's Last-Event-ID) gets exactly what it missed. The bus that
carries them: `InProcessEventBus` here (one instance, SQLite), or
`interview.store.event_log.PostgresEventBus` (any number of instances on one PostgreSQL: a
subscriber on any instance gets every event of a session, in order, and resumes on any).

Delivery through a proxy that buffers whole responses: API Gateway HTTP APIs (v2) do not stream,
they forward an integration's response once it has ended (AWS: "By default, API Gateway waits to
receive the complete response before beginning transmission"; the STREAM transfer mode "is only
supported for REST APIs", https://docs.aws.amazon.com/apigateway/latest/developerguide/response-transfer-mode.html).
An events response held open for EVENTS_STREAM_SECONDS would reach the browser as one late
batch. With EVENTS_DELIVERY=poll each subscription ends POLL_LINGER_SECONDS after its first
event instead (or at the usual timeout when nothing happens), and the client asks again at once
with Last-Event-ID: long polling over the same SSE route, prompt through any buffering proxy.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from interview.config import EventsDelivery
from interview.domain import (
    ConnectionState,
    EndReason,
    Interruption,
    ReportStatus,
    Role,
    SessionStatus,
    Transcription,
    TurnKind,
    TurnSource,
)

log = structlog.get_logger(__name__)


class _EventBody(BaseModel):
    # Every field is always sent (defaults included): the schema says so, so the generated
    # TypeScript types have no optional fields where the JSON always has them.
    model_config = ConfigDict(
        frozen=True, extra="forbid", json_schema_serialization_defaults_required=True
    )


class TurnCommitted(_EventBody):
    """A turn of the transcript was stored: the interviewer's line or the candidate's answer."""

    type: Literal["turn"] = "turn"
    index: int
    role: Role
    kind: TurnKind
    text: str
    source: TurnSource
    question_index: int | None
    started_at: datetime
    ended_at: datetime
    # A turn published again with the same index replaces the earlier one: a line cut by the
    # candidate (what was heard), an answer that went on after a withdrawn reply.
    interruption: Interruption | None = None
    planned_text: str | None = None
    # A candidate turn: which pass its text comes from. Published again, with the accurate
    # text, once the accurate pass has replaced the live one.
    transcription: Transcription | None = None


class StatusChanged(_EventBody):
    type: Literal["status"] = "status"
    status: SessionStatus
    reason: EndReason | None = None


class ConnectionChanged(_EventBody):
    """The session's voice connection changed state."""

    type: Literal["connection"] = "connection"
    state: ConnectionState


class CandidateState(StrEnum):
    speaking = "speaking"
    transcribing = "transcribing"
    nothing_heard = "nothing_heard"  # noise or a cough: nothing to answer


class CandidateChanged(_EventBody):
    """What the voice pipeline hears of the candidate."""

    type: Literal["candidate"] = "candidate"
    state: CandidateState


class SpeakingState(StrEnum):
    started = "started"  # the line's first audio is on its way
    queued = "queued"  # the whole line is on its way; the answer comes next
    paused = "paused"  # the candidate began to speak over it: the interviewer holds
    resumed = "resumed"  # it was only a backchannel ("mm-hm"): the line goes on
    interrupted = "interrupted"  # the line was cut; the candidate has the floor


class InterviewerSpeaking(_EventBody):
    type: Literal["speaking"] = "speaking"
    role: Literal["interviewer"] = "interviewer"
    state: SpeakingState
    # Known once the line is committed and has played out (state "queued").
    index: int | None = None
    seconds: float | None = None
    latency_ms: int | None = None


class InterviewerModeChanged(_EventBody):
    """The interviewer's language model failed (the scripted stand-in speaks) or recovered."""

    type: Literal["interviewer"] = "interviewer"
    mode: Literal["normal", "degraded"]
    reason: str | None = None


class ResultsChanged(_EventBody):
    type: Literal["results"] = "results"
    status: Literal[ReportStatus.ready, ReportStatus.failed]


class TurnFailed(_EventBody):
    """A spoken turn could not be answered; the candidate may say it again."""

    type: Literal["error"] = "error"
    message: str
    reason: str


SessionEvent = Annotated[
    TurnCommitted
    | StatusChanged
    | ConnectionChanged
    | CandidateChanged
    | InterviewerSpeaking
    | InterviewerModeChanged
    | ResultsChanged
    | TurnFailed,
    Field(discriminator="type"),
]

MAX_EVENTS_PER_SESSION = 500
MAX_SESSIONS = 2000
# Erased sessions remembered by the in-process bus (their late events are dropped).
MAX_ERASED = 10_000
# Poll delivery: how long a subscription stays open after its first event, so the events that
# come together (a turn and the status it changes, the two turns of a typed answer) share one
# response instead of costing a request each, while no event waits more than this for its
# response to end.
POLL_LINGER_SECONDS = 0.15


@dataclass(frozen=True)
class Event:
    """A published event: its id (ordered, for Last-Event-ID), its session and what happened."""

    id: int
    session_id: str
    body: SessionEvent

    @property
    def type(self) -> str:
        return self.body.type

    def json(self) -> str:
        return self.body.model_dump_json()


EVENT_BODY: TypeAdapter[SessionEvent] = TypeAdapter(SessionEvent)

Listener = Callable[[Event], None]


class _Resync:
    """Put in each subscription's queue after live delivery was interrupted (the PostgreSQL
    bus lost its LISTEN connection): the subscription reads what it may have missed."""


RESYNC = _Resync()


class EventBus(ABC):
    """Publishes each session's events to its subscribers (SSE) and to listeners, in order.

    `InProcessEventBus` keeps them in this process (SQLite: one instance);
    `interview.store.event_log.PostgresEventBus` stores them and fans them out to every
    instance. Both deliver on the loop given to `bind_loop`, subscribers and listeners alike.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        # Subscriptions' queues by session; touched on the loop only.
        self._waiters: dict[str, set[asyncio.Queue[Event | _Resync]]] = {}
        self._local_listeners: list[Listener] = []
        self._everywhere_listeners: list[Listener] = []
        # None: a subscription follows live events until it is closed (streaming). A number:
        # it ends that long after the first event it yields (poll delivery).
        self.linger_seconds: float | None = None

    def set_delivery(self, delivery: EventsDelivery) -> None:
        """EVENTS_DELIVERY: `poll` ends each subscription shortly after its first event."""
        self.linger_seconds = POLL_LINGER_SECONDS if delivery is EventsDelivery.poll else None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop subscribers wait on; publishing from other threads is handed to it."""
        self._loop = loop

    def add_listener(self, listener: Listener, *, everywhere: bool = False) -> None:
        """Call `listener` with each event this process published, in order; with
        `everywhere`, with each event of every session published by any instance."""
        (self._everywhere_listeners if everywhere else self._local_listeners).append(listener)

    @abstractmethod
    def publish(self, session_id: str, body: SessionEvent) -> Event | None:
        """Publish an event of the session; thread-safe, and never waits for a database.
        Returns the event when its id is known at once (in-process), else None."""

    @abstractmethod
    async def history(self, session_id: str, after_id: int | None = None) -> list[Event]:
        """The session's kept events (at most MAX_EVENTS_PER_SESSION), after `after_id`."""

    @abstractmethod
    async def start(self) -> None:
        """Begin storing and delivering (after the database's migrations)."""

    @abstractmethod
    async def stop(self) -> None:
        """Deliver what was published (for a bounded time), then stop."""

    @abstractmethod
    async def flush(self) -> None:
        """Until every event this process published so far is stored and delivered."""

    @abstractmethod
    def forget(self, session_id: str) -> None:
        """Drop what this process keeps of an erased session's events."""

    async def subscribe(
        self, session_id: str, after_id: int | None = None
    ) -> AsyncGenerator[Event, None]:
        """Replay what came after `after_id` (nothing when None), then follow live events.

        With poll delivery (`linger_seconds` set) the subscription ends that long after its
        first event; the caller's own timeout ends it when nothing happens.
        """
        linger = self.linger_seconds
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | _Resync] = asyncio.Queue()
        # Registered before the backlog is read: an event is in one or the other (or both,
        # and then skipped by its id), never in neither.
        self._waiters.setdefault(session_id, set()).add(queue)
        try:
            if after_id is None:
                known = await self.history(session_id)
                last = known[-1].id if known else 0
                backlog: list[Event] = []
            else:
                last = after_id
                backlog = await self.history(session_id, after_id)
            for event in backlog:
                last = event.id
                yield event
            ends_at = loop.time() + linger if linger is not None and backlog else None
            while True:
                if ends_at is None:
                    item = await queue.get()
                else:
                    try:
                        async with asyncio.timeout_at(ends_at):
                            item = await queue.get()
                    except TimeoutError:
                        return  # anything published since stays stored for the next request
                # After a gap in live delivery, what is stored after the last event yielded.
                events = [item] if isinstance(item, Event) else await self.history(session_id, last)
                for event in events:
                    if event.id > last:
                        last = event.id
                        if linger is not None and ends_at is None:
                            ends_at = loop.time() + linger
                        yield event
        finally:
            waiters = self._waiters.get(session_id)
            if waiters is not None:
                waiters.discard(queue)
                if not waiters:
                    del self._waiters[session_id]

    def _deliver(
        self, event: Event, *, subscribers: bool = True, local: bool = True, everywhere: bool = True
    ) -> None:
        """Hand one event to the session's subscribers and to the listeners; on the loop."""
        if subscribers:
            for queue in self._waiters.get(event.session_id, ()):
                queue.put_nowait(event)
        listeners = (self._local_listeners if local else []) + (
            self._everywhere_listeners if everywhere else []
        )
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # one failing listener must not starve the others
                log.exception("event_listener_failed", event_type=event.type)

    def _resync_subscribers(self) -> None:
        for waiters in self._waiters.values():
            for queue in waiters:
                queue.put_nowait(RESYNC)


class InProcessEventBus(EventBus):
    """Events kept in this process, in a bounded buffer per session: one instance (SQLite).

    Ids grow across restarts (they start from the boot time in milliseconds), so an id from
    before a restart is simply older than everything buffered now.
    """

    def __init__(self) -> None:
        super().__init__()
        self._ids = itertools.count(time.time_ns() // 1_000_000)
        self._channels: OrderedDict[str, deque[Event]] = OrderedDict()
        self._lock = threading.Lock()
        # Published, not yet delivered: in id order, so events published from several threads
        # reach subscribers in the order of their ids.
        self._undelivered: deque[Event] = deque()
        self._delivering = False
        # Sessions erased lately: what is published for them later (a report finished after
        # the erasure) is dropped, as the PostgreSQL bus drops it. Ids are never reused.
        self._erased: OrderedDict[str, None] = OrderedDict()

    def publish(self, session_id: str, body: SessionEvent) -> Event:
        with self._lock:
            event = Event(next(self._ids), session_id, body)
            if session_id in self._erased:
                return event
            self._channel(session_id).append(event)
            self._undelivered.append(event)
        loop = self._loop
        if loop is not None and _running_loop() is not loop:
            loop.call_soon_threadsafe(self._deliver_undelivered)
        else:
            self._deliver_undelivered()
        return event

    async def history(self, session_id: str, after_id: int | None = None) -> list[Event]:
        with self._lock:
            events = list(self._channels.get(session_id, ()))
        return [e for e in events if after_id is None or e.id > after_id]

    # Nothing to start or wait for: publish() delivers before it returns, or hands the
    # delivery to the loop (from another thread).
    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def flush(self) -> None:
        await asyncio.sleep(0)  # what other threads handed to the loop runs first

    def forget(self, session_id: str) -> None:
        with self._lock:
            self._channels.pop(session_id, None)
            self._erased[session_id] = None
            if len(self._erased) > MAX_ERASED:
                self._erased.popitem(last=False)

    def _deliver_undelivered(self) -> None:
        # One delivery at a time, in order: an event published by a listener is delivered
        # after the one that listener is handling.
        with self._lock:
            if self._delivering:
                return
            self._delivering = True
        try:
            while True:
                with self._lock:
                    if not self._undelivered:
                        self._delivering = False
                        return
                    event = self._undelivered.popleft()
                self._deliver(event)
        except BaseException:
            with self._lock:
                self._delivering = False
            raise

    def _channel(self, session_id: str) -> deque[Event]:
        """The session's buffer, made most recent; the least recently active go first, and
        never one that a client is still following. Call with the lock held."""
        channel = self._channels.get(session_id)
        if channel is None:
            channel = self._channels[session_id] = deque(maxlen=MAX_EVENTS_PER_SESSION)
        self._channels.move_to_end(session_id)
        if len(self._channels) > MAX_SESSIONS:
            idle = [sid for sid in self._channels if sid not in self._waiters]
            for sid in idle[: len(self._channels) - MAX_SESSIONS]:
                del self._channels[sid]
        return channel


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
