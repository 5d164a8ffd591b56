"""Erasing interviews: one on request (the candidate's right to erasure), and every interview
that ended more than DATA_RETENTION_DAYS ago, by a sweep any number of instances run."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

import structlog

from interview.access import SessionNotFound
from interview.report.writer import report_lock
from interview.sessions import InterviewService
from interview.voice.gateway import VoiceGateway

log = structlog.get_logger(__name__)

# Interviews deleted per transaction by a purge, and at most per sweep: a backlog (retention
# just turned on) goes in steps, between the other upkeep of the same loop.
PURGE_BATCH = 200
SWEEP_MAX = 2000
# How long an erasure waits for the end of a live interview to be stored and announced to every
# instance (the one holding its call hangs up on it), then for that call to be hung up.
ANNOUNCE_SECONDS = 5.0
HANG_UP_SECONDS = 5.0
HANG_UP_POLL_SECONDS = 0.1
# One instance sweeps at a time; the others skip their turn.
RETENTION_LOCK = "retention"


class Eraser:
    def __init__(self, service: InterviewService, voice: VoiceGateway, retention_days: int) -> None:
        self.service = service
        self.store = service.store
        self.events = service.events
        self.voice = voice
        self.retention_days = retention_days

    async def erase(self, session_id: str) -> bool:
        """Delete the interview and every row of it; False when there is none (already erased).

        A live interview is ended first, as the candidate would end it, so its voice call is hung
        up wherever it is and its event streams hear the end; then it is deleted under its lock.
        A write still under way for it (a report, an event) finds it gone and stores nothing.
        """
        store = self.store
        # Held if free: no instance begins a report of an interview being erased (the writer
        # leaves a report whose lock is held). One already being written is dropped at its save.
        async with store.locks.try_hold(report_lock(session_id)):
            row = await store.get_session(session_id)
            if row is None:
                return False
            if row.ended_at is None:
                try:
                    await self.service.end(row)
                except SessionNotFound:
                    return False  # erased meanwhile, through another instance
                await self._announce()
            await self._hang_up(session_id)
            async with store.locks.hold(session_id):
                deleted = await store.delete_sessions([session_id])
        self.events.forget(session_id)
        if deleted:
            log.info("interview_erased", session_id=session_id)
        return bool(deleted)

    async def purge(self, ended_before: datetime, *, limit: int | None = None) -> int:
        """Erase the interviews that ended before `ended_before`, oldest first, in batches (at
        most `limit`); how many were erased. Beside another purge, each leaves the other's."""
        purged = 0
        while limit is None or purged < limit:
            batch = PURGE_BATCH if limit is None else min(PURGE_BATCH, limit - purged)
            found = await self.store.sessions_ended_before(ended_before, batch)
            gone = await self.store.delete_sessions(
                found, ended_before=ended_before, skip_locked=True
            )
            for session_id in gone:
                self.events.forget(session_id)
            purged += len(gone)
            if len(found) < batch or not gone:
                break
        return purged

    def cutoff(self) -> datetime | None:
        """Interviews that ended before this are past the retention period (None: kept for
        ever)."""
        if self.retention_days == 0:
            return None
        return self.service.clock() - timedelta(days=self.retention_days)

    async def sweep(self) -> int:
        """Erase what is past the retention period; how many. Run by every instance: one at a
        time does the work, the others skip (and a purge finding nothing is fine)."""
        cutoff = self.cutoff()
        if cutoff is None:
            return 0
        async with self.store.locks.try_hold(RETENTION_LOCK) as mine:
            if not mine:
                return 0
            return await self.purge(cutoff, limit=SWEEP_MAX)

    async def _announce(self) -> None:
        # The end is stored before its session is deleted: an event of a deleted session is
        # dropped, and the instance holding the call would never hear of the end.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(ANNOUNCE_SECONDS):
                await self.events.flush()

    async def _hang_up(self, session_id: str) -> None:
        """Close the session's call here, and wait (bounded) for another instance holding it to
        hang up on the end it was told of: it gives the session up when it has."""
        if self.voice.has_connection(session_id):
            await self.voice.close(session_id)
        loop = asyncio.get_running_loop()
        until = loop.time() + HANG_UP_SECONDS
        while await self.voice.ownership.remote_owner(session_id) is not None:
            if loop.time() >= until:
                log.warning("erased_call_still_held", session_id=session_id)
                return
            await asyncio.sleep(HANG_UP_POLL_SECONDS)
