"""Live events of each interview, for Server-Sent Events and for parts that react to them.

Events are kept per session in a bounded buffer so a client that reconnects with the id of the
last event it saw (SSE's Last-Event-ID) gets exactly what it missed. Ids grow across restarts
(they start from the boot time in milliseconds), so an id from before a restart is simply older
than everything buffered now.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

MAX_EVENTS_PER_SESSION = 500
MAX_SESSIONS = 2000


@dataclass(frozen=True)
class Event:
    id: int
    session_id: str
    type: str
    data: dict[str, Any]


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

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop subscribers wait on; publishing from other threads is handed to it."""
        self._loop = loop

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def publish(self, session_id: str, type_: str, **data: Any) -> Event:
        with self._lock:
            event = Event(next(self._ids), session_id, type_, data)
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

    async def subscribe(self, session_id: str, after_id: int | None = None) -> AsyncIterator[Event]:
        """Replay what came after `after_id` (nothing when None), then follow live events."""
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
            while True:
                event = await queue.get()
                if event.id > last:
                    last = event.id
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
