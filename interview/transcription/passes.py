"""Runs the accurate pass over every kept stretch of answer audio, on whichever instance claims
it, and puts the outcome into the answer's transcript.

Each worker (one per AccurateProcess) claims the oldest pending stretch (a lease: interview/
store/answer_audio.py), transcribes it in its low-priority child, and stores the words or the
failed attempt. Every instance, workers or not, also sweeps: stretches past their deadline or
out of attempts are given up (the live text stands, flagged), and an answer whose stretches are
all settled gets its final text under the session's lock (the lock a continued answer adds its
stretch under), published as the turn again. Once an ended interview has nothing pending,
`on_transcribed` says so (the report writer waits for that). Nothing here blocks for ever: the
deadline gives up whatever is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import structlog

from interview.config import Settings
from interview.domain import Transcription
from interview.events import Event, EventBus, TurnCommitted
from interview.sessions import Clock, utcnow
from interview.store import Store
from interview.store.answer_audio import AUDIO_LOST, FAILED, TIMED_OUT, AnswerAudio, Claimed
from interview.store.locks import SessionBusy
from interview.transcription.process import AccurateProcess, PassFailed, PassTimedOut

log = structlog.get_logger(__name__)

# A claim outlives one attempt by this much: the database round trips around the pass, and the
# time the pass is held while live work runs (a busy instance holds it for minutes at most).
LEASE_MARGIN_SECONDS = 240.0
# How often an instance looks for work and overdue stretches when nothing wakes it.
POLL_SECONDS = 1.0
# A child that could not start is tried again after this.
RESTART_PAUSE_SECONDS = 10.0


@dataclass(frozen=True)
class PassSettings:
    timeout_seconds: float = 60.0  # one attempt
    attempts: int = 2
    poll_seconds: float = POLL_SECONDS
    lease_margin_seconds: float = LEASE_MARGIN_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings) -> PassSettings:
        return cls(
            timeout_seconds=settings.accurate_pass_timeout_seconds,
            attempts=settings.accurate_pass_attempts,
        )

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.timeout_seconds + self.lease_margin_seconds)


class TranscriptPasses:
    def __init__(
        self,
        store: Store,
        events: EventBus,
        processes: Sequence[AccurateProcess],
        settings: PassSettings,
        instance_id: str,
        clock: Clock = utcnow,
        on_transcribed: Callable[[str], None] = lambda _session_id: None,
    ) -> None:
        self.store = store
        self.audio = AnswerAudio(store)
        self.events = events
        self.processes = tuple(processes)
        self.settings = settings
        self.instance_id = instance_id
        self.clock = clock
        self.on_transcribed = on_transcribed
        self._wake = asyncio.Event()
        events.add_listener(self._on_event)

    def notify(self) -> None:
        """A stretch was stored on this instance: look for it now."""
        self._wake.set()

    def live_work(self, busy: bool) -> None:
        """Live speech work started (True) or ended (False): the passes stop meanwhile
        (interview/speech/activity.py). Called from the live workers' threads."""
        for process in self.processes:
            process.hold(busy)

    def _on_event(self, event: Event) -> None:
        # An answer stored here with its audio waits for its pass: no need to wait for a poll.
        body = event.body
        if isinstance(body, TurnCommitted) and body.transcription == Transcription.live:
            self.notify()

    async def run(self) -> None:
        """For ever (cancelled at shutdown): the workers, and the sweep every poll. The
        children are closed when it ends."""
        workers = [asyncio.create_task(self._work(p)) for p in self.processes]
        try:
            while True:
                try:
                    await self.sweep()
                except Exception:  # a database that is away now: the next sweep may find it
                    log.exception("accurate_pass_sweep_failed")
                await asyncio.sleep(self.settings.poll_seconds)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for process in self.processes:
                await process.close()

    async def sweep(self) -> None:
        """Give up what is overdue, and settle the answers whose stretches all are."""
        given_up = await self.audio.give_up_overdue(self.clock(), self.settings.attempts)
        for turn in given_up:
            log.warning(
                "accurate_pass_given_up",
                session_id=turn.session_id,
                turn_index=turn.turn_index,
            )
        for turn in await self.audio.turns_to_finalize():
            await self._finalize(turn.session_id, turn.turn_index)

    async def work_once(self, process: AccurateProcess) -> bool:
        """Claim one stretch and run its pass; False when there was none to claim."""
        claimed = await self.audio.claim(
            self.instance_id, self.clock(), self.settings.lease, self.settings.attempts
        )
        if claimed is None:
            return False
        try:
            await self._run_pass(process, claimed)
        except asyncio.CancelledError:
            # Stopping: the stretch goes back at once, its attempt not counted.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.audio.release(claimed.id, self.instance_id))
            raise
        await self._finalize(claimed.session_id, claimed.turn_index)
        return True

    async def _work(self, process: AccurateProcess) -> None:
        while True:
            try:
                # Ready before claiming: the lease covers the pass, not a model loading.
                await process.start()
            except PassFailed:
                log.exception("accurate_pass_engine_failed")
                await asyncio.sleep(RESTART_PAUSE_SECONDS)
                continue
            self._wake.clear()
            try:
                worked = await self.work_once(process)
            except Exception:  # the database went away: the stretch's lease lapses, retried
                log.exception("accurate_pass_error")
                worked = False
            if not worked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.poll_seconds)

    async def _run_pass(self, process: AccurateProcess, claimed: Claimed) -> None:
        started = self.clock()
        began, held = time.monotonic(), process.held_seconds()
        pid = process.pid
        final = claimed.attempts >= self.settings.attempts
        audio_seconds = len(claimed.audio or b"") / 2 / claimed.sample_rate
        outcome = "done"
        if claimed.audio is None:
            outcome = AUDIO_LOST
            await self.audio.fail(claimed.id, self.instance_id, AUDIO_LOST, final=True)
        else:
            try:
                await process.start()
                pid = process.pid  # the child that runs it (a timeout or crash replaces it)
                transcript = await process.transcribe(
                    claimed.audio,
                    claimed.sample_rate,
                    claimed.context,
                    self.settings.timeout_seconds,
                )
            except (PassTimedOut, PassFailed) as exc:
                outcome = TIMED_OUT if isinstance(exc, PassTimedOut) else FAILED
                await self.audio.fail(claimed.id, self.instance_id, outcome, final=final)
            else:
                words = [[w.word, round(w.start, 3), round(w.end, 3)] for w in transcript.words]
                if not await self.audio.finish(
                    claimed.id, self.instance_id, transcript.text, words
                ):
                    outcome = "superseded"  # given up (deadline) or erased meanwhile
        log.info(
            "accurate_pass",
            session_id=claimed.session_id,
            turn_index=claimed.turn_index,
            segment=claimed.segment,
            attempt=claimed.attempts,
            audio_seconds=round(audio_seconds, 2),
            seconds=round(time.monotonic() - began, 3),
            # Of those, stopped while live speech work ran (interview/speech/activity.py).
            held_seconds=round(process.held_seconds() - held, 3),
            started=started.isoformat(),
            ended=self.clock().isoformat(),
            pid=pid,
            outcome=outcome,
        )

    async def _finalize(self, session_id: str, turn_index: int) -> None:
        try:
            async with self.store.locks.hold(session_id):
                turn = await self.audio.finalize_turn(session_id, turn_index)
        except SessionBusy:
            return  # the next sweep settles it
        if turn is None:
            return  # a stretch is still pending, another instance settled it, or erased
        log.info(
            "accurate_pass_turn",
            session_id=session_id,
            turn_index=turn_index,
            transcription=turn.transcription,
            note=turn.transcription_note,
        )
        self.events.publish(session_id, TurnCommitted.model_validate(turn, from_attributes=True))
        if await self.audio.transcribed(session_id):
            self.on_transcribed(session_id)
