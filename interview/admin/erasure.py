"""Erasing interviews from the command line: purge those ended before a cutoff, or delete one."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from interview.config import Settings

if TYPE_CHECKING:
    from interview.runtime import Runtime

_AGE = re.compile(r"(\d{1,6})([hdw])")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """`12h`, `30d`, `8w`: hours, days or weeks. ValueError for anything else."""
    match = _AGE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an age such as 12h, 30d or 8w")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


class InterviewMissing(Exception):
    """No interview with that id (it never existed, or was erased already)."""


@asynccontextmanager
async def _runtime(settings: Settings, *, publish: bool) -> AsyncIterator[Runtime]:
    """The service's parts on its database, brought to the current schema as a server would;
    with `publish`, its events reach every instance (an erased live interview's end)."""
    # Imported here, a second's worth: a mistyped command is answered at once.
    from interview.runtime import Runtime

    runtime = Runtime.build(settings)
    try:
        await runtime.store.migrate()
        if publish:
            await runtime.events.start()
        yield runtime
    finally:
        if publish:
            await runtime.events.stop()
        await runtime.store.dispose()


async def purge(settings: Settings, older_than: timedelta, *, dry_run: bool) -> dict[str, Any]:
    """Erase (or, dry, count) the interviews that ended more than `older_than` ago."""
    async with _runtime(settings, publish=False) as runtime:
        cutoff = runtime.service.clock() - older_than
        result: dict[str, Any] = {"command": "purge", "ended_before": cutoff.isoformat()}
        if dry_run:
            result["would_erase"] = await runtime.store.count_sessions_ended_before(cutoff)
        else:
            result["erased"] = await runtime.erasure.purge(cutoff)
        return result


async def delete(settings: Settings, session_id: str) -> dict[str, Any]:
    """Erase one interview (a live one is ended first); InterviewMissing when there is none."""
    async with _runtime(settings, publish=True) as runtime:
        if not await runtime.erasure.erase(session_id):
            raise InterviewMissing(f"no interview {session_id!r} (never existed, or erased)")
        return {"command": "delete", "session_id": session_id, "erased": True}
