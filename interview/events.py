"""Live events of each interview, for Server-Sent Events and for parts that react to them.

Each kind of event is a model with a `Literal` type; `SessionEvent` is their union, published in
/openapi.json (the web client's types are generated from it), so a renamed field or value breaks
the Python and the TypeScript builds alike.

Events are kept per session in a bounded buffer so a client that reconnects with the id of the
last event it saw (SSE's Last-Event-ID) gets exactly what it missed. Ids grow across restarts
(they start from the boot time in milliseconds), so an id from before a restart is simply older
than everything buffered now.

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
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from interview.config import EventsDelivery
from interview.domain import (
    ConnectionState,
    EndReason,
    Interruption,
    ReportStatus,
    Role,
    SessionStatus,
    TurnKind,
    TurnSource,
)


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


@dataclass
class _Channel:
    events: deque[Event] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS_PER_SESSION))
    waiters: set[asyncio.Queue[Event]] = field(default_factory=set)


Listener = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._ids = itertools.count(time.time_ns() // 1_000_000)
        self._channels: OrderedDict[str, _Channel] = OrderedDict()
        self._listeners: list[Listener] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        # None: a subscription follows live events until it is closed (streaming). A number:
        # it ends that long after the first event it yields (poll delivery).
        self.linger_seconds: float | None = None

    def set_delivery(self, delivery: EventsDelivery) -> None:
        """EVENTS_DELIVERY: `poll` ends each subscription shortly after its first event."""
        self.linger_seconds = POLL_LINGER_SECONDS if delivery is EventsDelivery.poll else None

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop subscribers wait on; publishing from other threads is handed to it."""
        self._loop = loop

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def publish(self, session_id: str, body: SessionEvent) -> Event:
        with self._lock:
            event = Event(next(self._ids), session_id, body)
            channel = self._channel(session_id)
            channel.events.append(event)
            waiters = list(channel.waiters)
        loop = self._loop
        if loop is not None and _running_loop() is not loop:
            loop.call_soon_threadsafe(self._deliver, event, waiters)
        else:
            self._deliver(event, waiters)
        return event

    def history(self, session_id: str, after_id: int | None = None) -> list[Event]:
        with self._lock:
            channel = self._channels.get(session_id)
            events = list(channel.events) if channel else []
        return [e for e in events if after_id is None or e.id > after_id]

    async def subscribe(
        self, session_id: str, after_id: int | None = None
    ) -> AsyncGenerator[Event, None]:
        """Replay what came after `after_id` (nothing when None), then follow live events.

        With poll delivery (`linger_seconds` set) the subscription ends that long after its
        first event; the caller's own timeout ends it when nothing happens.
        """
        linger = self.linger_seconds
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()
        with self._lock:
            channel = self._channel(session_id)
            channel.waiters.add(queue)
            backlog = [e for e in channel.events if after_id is not None and e.id > after_id]
        try:
            last = after_id or 0
            for event in backlog:
                last = event.id
                yield event
            ends_at = loop.time() + linger if linger is not None and backlog else None
            while True:
                if ends_at is None:
                    event = await queue.get()
                else:
                    try:
                        async with asyncio.timeout_at(ends_at):
                            event = await queue.get()
                    except TimeoutError:
                        return  # anything published since stays buffered for the next request
                if event.id > last:
                    last = event.id
                    if linger is not None and ends_at is None:
                        ends_at = loop.time() + linger
                    yield event
        finally:
            with self._lock:
                channel.waiters.discard(queue)

    def _channel(self, session_id: str) -> _Channel:
        """The session's channel, made most recent; the least recently active go first, and
        never one that a client is still following. Call with the lock held."""
        channel = self._channels.get(session_id)
        if channel is None:
            channel = self._channels[session_id] = _Channel()
        self._channels.move_to_end(session_id)
        if len(self._channels) > MAX_SESSIONS:
            idle = [sid for sid, ch in self._channels.items() if not ch.waiters]
            for sid in idle[: len(self._channels) - MAX_SESSIONS]:
                del self._channels[sid]
        return channel

    def _deliver(self, event: Event, waiters: list[asyncio.Queue[Event]]) -> None:
        for queue in waiters:
            queue.put_nowait(event)
        for listener in self._listeners:
            listener(event)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
