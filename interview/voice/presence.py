"""Records each session's voice connection state as its peer connection changes.

aiortc reports changes from its own callbacks, which must not wait for the database: each change
is written in the background, in order per session, and shutdown waits for the writes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from interview.domain import ConnectionState
from interview.sessions import InterviewService

log = structlog.get_logger(__name__)

# aiortc's peer connection states, as the service records them ("new" is not worth a write).
RECORDED = {
    "connecting": ConnectionState.connecting,
    "connected": ConnectionState.connected,
    "failed": ConnectionState.disconnected,
    "closed": ConnectionState.disconnected,
}


class Presence:
    def __init__(self, sessions: InterviewService) -> None:
        self.sessions = sessions
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last: dict[str, asyncio.Task[Any]] = {}

    def changed(self, session_id: str, rtc_state: str) -> None:
        """The session's peer connection is now in `rtc_state` (aiortc's name)."""
        state = RECORDED.get(rtc_state)
        if state is None:
            return
        previous = self._last.get(session_id)
        task = asyncio.get_running_loop().create_task(self._record(session_id, state, previous))
        self._last[session_id] = task
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._done(session_id, t))

    async def settle(self) -> None:
        """Wait until the changes seen so far are written."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def _record(
        self, session_id: str, state: ConnectionState, previous: asyncio.Task[Any] | None
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # in order: "connected" never lands after "closed"
        try:
            await self.sessions.connection_changed(session_id, state)
        except Exception:  # a lost write of a connection state must not break the call
            log.exception("connection_state_not_recorded", session_id=session_id, state=state)

    def _done(self, session_id: str, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if self._last.get(session_id) is task:
            del self._last[session_id]
