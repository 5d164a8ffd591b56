"""Helpers for tests that run the service's Runtime in process."""

from __future__ import annotations

import asyncio

from interview.runtime import Runtime

READY_WITHIN_SECONDS = 5.0


async def wait_until_ready(runtime: Runtime) -> None:
    """Wait for the started runtime's schema and start-up work (`ready`)."""
    async with asyncio.timeout(READY_WITHIN_SECONDS):
        # `ready` is a plain flag the runtime sets when its start-up task is done: polled.
        while not runtime.ready:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
