"""Hangs up a session's voice connection when its interview ends, on whichever instance."""

from __future__ import annotations

import asyncio
from typing import Any

from interview.domain import ENDED_STATUSES, EndReason
from interview.events import Event, EventBus, StatusChanged
from interview.voice.gateway import VoiceGateway

# A plan finished while a voice connection was open: the pipeline closes the connection once
# the closing line has played; this is the fallback, e.g. for a plan finished in text mode.
PLAN_FINISHED_CLOSE_SECONDS = 30.0


class HangUp:
    def __init__(self, gateway: VoiceGateway, events: EventBus) -> None:
        self.gateway = gateway
        self._tasks: set[asyncio.Task[Any]] = set()
        # Every instance's events: the interview may be ended through another one.
        events.add_listener(self._on_event, everywhere=True)

    def _on_event(self, event: Event) -> None:
        body = event.body
        if not isinstance(body, StatusChanged) or body.status not in ENDED_STATUSES:
            return
        if not self.gateway.has_connection(event.session_id):
            return
        delay = PLAN_FINISHED_CLOSE_SECONDS if body.reason is EndReason.plan_finished else 0.0
        task = asyncio.get_running_loop().create_task(self._close(event.session_id, delay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close(self, session_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.gateway.close(session_id)
