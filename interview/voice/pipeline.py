"""One spoken turn: the candidate's audio in, the interviewer's voice out.

  end of answer -> speech-to-text -> commit the answer -> interviewer -> commit its line
                -> text-to-speech sentence by sentence -> audio frames to the candidate

Model calls run in a small thread pool sized for the cores, never on the event loop, so one
session's transcription does not freeze another's audio.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import Any

import numpy as np
import structlog
from fastrtc import CloseStream, get_current_context

from interview.events import EventBus
from interview.sessions import AnswerOutcome, InterviewService, SessionClosed, SessionNotFound
from interview.speech.stt import SpeechToText
from interview.speech.vad import to_float32
from interview.store import TurnRow
from interview.voice.handler import InterviewHandler
from interview.voice.speech_cache import SpeechCache
from interview.voice.streamed_line import StreamedLine
from interview.voice.turn_detector import TurnEvent

log = structlog.get_logger(__name__)

# Longest a piece is held back waiting for the next one to be synthesized.
MAX_HOLD_SECONDS = 3.0

# Stretches shorter than this (0.3 s at 16 kHz) hold no word worth a transcription call.
MIN_SEGMENT_SAMPLES = 4_800

# Extra time after the closing line's audio before the connection is closed, so its last
# words are not cut by network jitter.
CLOSE_MARGIN_SECONDS = 1.0


class VoicePipeline:
    def __init__(
        self,
        service: InterviewService,
        stt: SpeechToText,
        speech: SpeechCache,
        compute: Executor,
        events: EventBus,
        handler_for: Callable[[str], InterviewHandler | None],
        close_connection: Callable[[str], Any],
    ) -> None:
        self.service = service
        self.stt = stt
        self.speech = speech
        self.compute = compute
        self.events = events
        self.handler_for = handler_for
        self.close_connection = close_connection
        self._closing: set[asyncio.Task[Any]] = set()

    # fastrtc entry points

    async def greet(self) -> AsyncIterator[Any]:
        """startup_fn: speak the interviewer's current line as soon as the connection is up."""
        session_id = get_current_context().webrtc_id
        async for frame in self._guarded(session_id, self._greet(session_id)):
            yield frame

    async def reply(self, audio: tuple[int, np.ndarray]) -> AsyncIterator[Any]:
        """ReplyOnPause's fn: called with the audio of one finished answer."""
        session_id = get_current_context().webrtc_id
        async for frame in self._guarded(session_id, self._reply(session_id)):
            yield frame

    async def _guarded(self, session_id: str, frames: AsyncIterator[Any]) -> AsyncIterator[Any]:
        # A failing model or database must not take the connection down silently: the
        # client hears nothing more for this turn, but is told why and can go on.
        try:
            async for frame in frames:
                yield frame
        except Exception as exc:
            log.exception("voice_turn_failed", session_id=session_id)
            self.events.publish(
                session_id,
                "error",
                message="The interviewer could not answer this turn; please say it again.",
                reason=type(exc).__name__,
            )

    async def _greet(self, session_id: str) -> AsyncIterator[Any]:
        try:
            row = await self.service.open_session(session_id)
        except (SessionClosed, SessionNotFound):
            yield CloseStream("the interview has ended")
            return
        voice = self.service.voice_for(row)
        line = await self.service.current_line(session_id)
        if line is not None:
            spoken = StreamedLine.of(self.speech, voice, line.text)
            async for frame in self._speak(session_id, spoken, lambda: _known(line), heard_at=None):
                yield frame
        await self._prefetch_next(session_id, voice)

    async def _reply(self, session_id: str) -> AsyncIterator[Any]:
        handler = self.handler_for(session_id)
        turn = handler.last_turn if handler is not None else None
        if turn is None:
            return
        self.events.publish(session_id, "candidate", state="transcribing")
        marks = {"end_of_turn": time.time()}
        text = await self._transcribe(handler, turn.audio)
        marks["stt"] = time.time()
        if not text:
            # Noise or a cough: nothing to answer, and nothing worth storing.
            self.events.publish(session_id, "candidate", state="nothing_heard")
            return
        try:
            voice = self.service.voice_for(await self.service.open_session(session_id))
        except (SessionClosed, SessionNotFound):
            yield CloseStream("the interview has ended")
            return
        line = StreamedLine(self.speech, voice)
        # The interviewer streams its line into `line` while the answer and the reply are
        # committed; speech starts on the first complete sentence. Not cancelled if the
        # candidate hangs up: the answer and the reply are still saved.
        answering = asyncio.ensure_future(
            self.service.answer_spoken(
                session_id,
                text,
                started_at=_utc(turn.speech_started),
                ended_at=_utc(turn.speech_ended),
                on_text=line.add,
            )
        )
        answering.add_done_callback(lambda task: _settle(line, task))
        first = True
        try:
            async for frame in self._speak(
                session_id, line, lambda: _interviewer_turn(answering), heard_at=turn.speech_ended
            ):
                if first:
                    first = False
                    marks["first_audio"] = time.time()
                    marks["interviewer"] = line.first_text_at or marks["first_audio"]
                    log.info(
                        "reply_timing",
                        session_id=session_id,
                        # Each stage's share of end-of-speech -> first reply audio, in ms.
                        end_of_turn_ms=_ms(turn.detected - turn.speech_ended),
                        handoff_ms=_ms(marks["end_of_turn"] - turn.detected),
                        stt_ms=_ms(marks["stt"] - marks["end_of_turn"]),
                        interviewer_first_text_ms=_ms(marks["interviewer"] - marks["stt"]),
                        tts_first_audio_ms=_ms(marks["first_audio"] - marks["interviewer"]),
                        total_ms=_ms(marks["first_audio"] - turn.speech_ended),
                        audio_seconds=round(len(turn.audio) / 16_000, 2),
                    )
                yield frame
            outcome = await answering
        except (SessionClosed, SessionNotFound):
            yield CloseStream("the interview has ended")
            return
        if outcome.session.ended_at is not None:
            yield CloseStream("the interview is complete")
        else:
            await self._prefetch_next(session_id, voice)

    def on_turn_event(self, handler: InterviewHandler, event: TurnEvent) -> None:
        """Called from the audio thread as the candidate speaks and pauses."""
        session_id = handler.session_id
        if session_id is None:
            return
        try:
            if event is TurnEvent.speech_started:
                handler.segments.clear()
                self.events.publish(session_id, "candidate", state="speaking")
            elif event is TurnEvent.pause:
                # Transcribe the answer's finished stretch now, while the candidate goes on: a
                # long answer is then mostly transcribed by the time it ends.
                segments = handler.segments
                start = segments[-1][0] if segments else 0
                audio = handler.draft_audio()
                if len(audio) - start >= MIN_SEGMENT_SAMPLES:
                    piece = to_float32(audio[start:].copy())
                    future = self.compute.submit(self.stt.transcribe, piece)
                    segments.append((len(audio), future))
        except Exception:
            # fastrtc's input loop dies on any exception: the interviewer would go deaf.
            log.exception("turn_event_failed", session_id=session_id)

    # internals

    async def _transcribe(self, handler: InterviewHandler, audio: np.ndarray) -> str:
        segments, handler.segments = handler.segments, []
        covered = segments[-1][0] if segments else 0
        futures = [future for _end, future in segments if _end <= len(audio)]
        if len(audio) - covered >= MIN_SEGMENT_SAMPLES or not futures:
            futures.append(self.compute.submit(self.stt.transcribe, to_float32(audio[covered:])))
        texts = [(await asyncio.wrap_future(future)).strip() for future in futures]
        return " ".join(text for text in texts if text)

    async def _speak(
        self,
        session_id: str,
        line: StreamedLine,
        spoken_turn: Callable[[], Awaitable[TurnRow]],
        heard_at: float | None,
    ) -> AsyncIterator[Any]:
        started: datetime | None = None
        latency_ms: int | None = None
        seconds = 0.0
        plays_until = 0.0  # wall-clock when the audio handed out so far will have played
        k = 0
        while (piece := await line.wait_for(k)) is not None:
            _text, future = piece
            # Shielded: a reply cut short must not cancel audio the cache shares with others.
            was_ready = future.done()
            audio = await asyncio.shield(future)
            piece_seconds = len(audio) / self.speech.sample_rate
            # The first piece of a reply is never held: the candidate is waiting in silence,
            # and a pause after an opening "Thank you." sounds natural (benchmarks/README.md).
            answering = heard_at is not None and k == 0
            if line.next_ready(k) is False and not answering:
                # Hold this piece back just long enough that the next one is likely ready
                # before it has played out: a later start sounds better than a gap mid-line.
                following = line.pieces[k + 1]
                queued = max(plays_until - time.time(), 0.0) + piece_seconds
                shortfall = self.speech.estimated_seconds(following[0]) - queued
                if shortfall > 0:
                    await asyncio.wait([following[1]], timeout=min(shortfall, MAX_HOLD_SECONDS))
            k += 1
            plays_until = max(plays_until, time.time()) + piece_seconds
            if started is None:
                started = datetime.now(UTC)
                log.info("first_audio", session_id=session_id, cached=was_ready)
                if heard_at is not None:
                    latency_ms = round((time.time() - heard_at) * 1000)
                # A streamed line is not committed yet, so its index may not be known here.
                self.events.publish(session_id, "speaking", role="interviewer", state="started")
            seconds += len(audio) / self.speech.sample_rate
            yield (self.speech.sample_rate, audio.reshape(1, -1))
        turn = await spoken_turn()
        if started is None:
            return
        ended = datetime.fromtimestamp(started.timestamp() + seconds, UTC)
        if turn.source != "voice":
            # First time this line is heard; repeating it after a reconnect keeps the record.
            await self.service.record_reply_timing(
                session_id, turn.index, started, ended, latency_ms
            )
        self.events.publish(
            session_id,
            "speaking",
            role="interviewer",
            state="queued",
            index=turn.index,
            seconds=round(seconds, 2),
            latency_ms=latency_ms,
        )
        log.info(
            "reply_spoken",
            session_id=session_id,
            index=turn.index,
            audio_seconds=round(seconds, 2),
            latency_ms=latency_ms,
        )
        if turn.kind == "close":
            task = asyncio.get_running_loop().create_task(
                self._close_after(session_id, plays_until - time.time() + CLOSE_MARGIN_SECONDS)
            )
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        # Stay "responding" until the line has played: the candidate is not listened to
        # meanwhile, so the interviewer's own voice (echo) is never taken for an answer.
        await asyncio.sleep(max(0.0, plays_until - time.time()))

    async def _close_after(self, session_id: str, delay: float) -> None:
        await asyncio.sleep(max(0.0, delay))
        await self.close_connection(session_id)

    async def _prefetch_next(self, session_id: str, voice: str | None) -> None:
        for line in await self.service.anticipated_lines(session_id):
            self.speech.prefetch(line, voice)


async def _known(turn: TurnRow) -> TurnRow:
    return turn


async def _interviewer_turn(answering: asyncio.Future[AnswerOutcome]) -> TurnRow:
    return (await answering).interviewer_turn


def _settle(line: StreamedLine, answering: asyncio.Future[AnswerOutcome]) -> None:
    """The reply is committed (speak the rest of its line) or failed (speak no more)."""
    if answering.cancelled() or answering.exception() is not None:
        line.abort()
    else:
        line.finish(answering.result().interviewer_turn.text)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
