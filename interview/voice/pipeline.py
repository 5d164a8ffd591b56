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
from datetime import UTC, datetime
from typing import Any

import structlog

from interview.access import SessionNotFound
from interview.domain import ConnectionState, TurnKind, TurnSource
from interview.events import (
    CandidateChanged,
    CandidateState,
    ConnectionChanged,
    Event,
    EventBus,
    InterviewerSpeaking,
    SpeakingState,
    TurnFailed,
)
from interview.sessions import AnswerOutcome, InterviewService, SessionClosed
from interview.speech.stack import LoadState, SpeechStack
from interview.store import TurnRow
from interview.voice.listener import Listener
from interview.voice.rtc import Close, Output
from interview.voice.streamed_line import StreamedLine
from interview.voice.turn_detector import DetectorOptions, TurnDetector, TurnEvent

log = structlog.get_logger(__name__)

# Longest a piece is held back waiting for the next one to be synthesized.
MAX_HOLD_SECONDS = 3.0


class VoicePipeline:
    def __init__(
        self,
        service: InterviewService,
        speech: SpeechStack,
        events: EventBus,
        options: DetectorOptions,
    ) -> None:
        self.service = service
        self.speech = speech
        self.events = events
        self.options = options
        self._tasks: set[asyncio.Task[Any]] = set()
        events.add_listener(self._on_event)

    # what interview.voice.rtc calls for each connection

    def listener_for(self, session_id: str) -> Listener:
        """The ear of a new connection of `session_id`."""
        engines = self.speech.engines
        return Listener(
            session_id,
            TurnDetector(engines.vad.stream(), self.options),
            transcribe=lambda audio: self.speech.compute.submit(engines.stt.transcribe, audio),
            notify=self._heard,
        )

    async def greet(self, session_id: str, listener: Listener) -> AsyncIterator[Output]:
        """Speak the interviewer's current line as soon as the connection is up."""
        async for output in self._guarded(session_id, self._greet(session_id)):
            yield output

    async def reply(self, session_id: str, listener: Listener) -> AsyncIterator[Output]:
        """Answer the candidate's answer that `listener` has just ended."""
        async for output in self._guarded(session_id, self._reply(session_id, listener)):
            yield output

    async def _guarded(
        self, session_id: str, outputs: AsyncIterator[Output]
    ) -> AsyncIterator[Output]:
        # A failing model or database must not take the connection down silently: the
        # client hears nothing more for this turn, but is told why and can go on.
        try:
            async for output in outputs:
                yield output
        except Exception as exc:
            log.exception("voice_turn_failed", session_id=session_id)
            self.events.publish(
                session_id,
                TurnFailed(
                    message="The interviewer could not answer this turn; please say it again.",
                    reason=type(exc).__name__,
                ),
            )

    async def _greet(self, session_id: str) -> AsyncIterator[Output]:
        try:
            row = await self.service.open_session(session_id)
        except (SessionClosed, SessionNotFound):
            yield Close("the interview has ended")
            return
        voice = self.service.voice_for(row)
        line = await self.service.current_line(session_id)
        if line is not None:
            spoken = StreamedLine.of(self.speech.cache, voice, line.text)
            async for frame in self._speak(session_id, spoken, lambda: _known(line), heard_at=None):
                yield frame
        await self._prefetch_next(session_id, voice)

    async def _reply(self, session_id: str, listener: Listener) -> AsyncIterator[Output]:
        turn = listener.last_turn
        if turn is None:
            return
        self.events.publish(session_id, CandidateChanged(state=CandidateState.transcribing))
        marks = {"end_of_turn": time.time()}
        text = await listener.transcript(turn)
        marks["stt"] = time.time()
        if not text:
            # Noise or a cough: nothing to answer, and nothing worth storing.
            self.events.publish(session_id, CandidateChanged(state=CandidateState.nothing_heard))
            return
        try:
            voice = self.service.voice_for(await self.service.open_session(session_id))
        except (SessionClosed, SessionNotFound):
            yield Close("the interview has ended")
            return
        line = StreamedLine(self.speech.cache, voice)
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
            yield Close("the interview has ended")
            return
        if outcome.session.ended_at is not None:
            yield Close("the interview is complete")
        else:
            await self._prefetch_next(session_id, voice)

    def _heard(self, session_id: str, event: TurnEvent) -> None:
        """The listener's news, from the audio thread, as the candidate speaks and pauses."""
        if event is TurnEvent.speech_started:
            self.events.publish(session_id, CandidateChanged(state=CandidateState.speaking))

    def _on_event(self, event: Event) -> None:
        body = event.body
        if (
            isinstance(body, ConnectionChanged)
            and body.state is ConnectionState.connecting
            and self.speech.state is LoadState.ready
        ):
            # Speech for the line the candidate will hear first is made while ICE connects.
            self._spawn(self._prefetch_current(event.session_id))

    # internals

    async def _speak(
        self,
        session_id: str,
        line: StreamedLine,
        spoken_turn: Callable[[], Awaitable[TurnRow]],
        heard_at: float | None,
    ) -> AsyncIterator[Output]:
        cache = self.speech.cache
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
            piece_seconds = len(audio) / cache.sample_rate
            # The first piece of a reply is never held: the candidate is waiting in silence,
            # and a pause after an opening "Thank you." sounds natural (benchmarks/README.md).
            answering = heard_at is not None and k == 0
            if line.next_ready(k) is False and not answering:
                # Hold this piece back just long enough that the next one is likely ready
                # before it has played out: a later start sounds better than a gap mid-line.
                following = line.pieces[k + 1]
                queued = max(plays_until - time.time(), 0.0) + piece_seconds
                shortfall = cache.estimated_seconds(following[0]) - queued
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
                self.events.publish(session_id, InterviewerSpeaking(state=SpeakingState.started))
            seconds += piece_seconds
            yield (cache.sample_rate, audio.reshape(1, -1))
        turn = await spoken_turn()
        if started is None:
            return
        ended = datetime.fromtimestamp(started.timestamp() + seconds, UTC)
        if turn.source != TurnSource.voice:
            # First time this line is heard; repeating it after a reconnect keeps the record.
            await self.service.record_reply_timing(
                session_id, turn.index, started, ended, latency_ms
            )
        self.events.publish(
            session_id,
            InterviewerSpeaking(
                state=SpeakingState.queued,
                index=turn.index,
                seconds=round(seconds, 2),
                latency_ms=latency_ms,
            ),
        )
        log.info(
            "reply_spoken",
            session_id=session_id,
            index=turn.index,
            audio_seconds=round(seconds, 2),
            latency_ms=latency_ms,
        )
        # Stay "responding" until the line has played: the candidate is not listened to
        # meanwhile, so the interviewer's own voice (echo) is never taken for an answer. A
        # closing line's Close follows only then, so its last words are heard.
        await asyncio.sleep(max(0.0, plays_until - time.time()))
        if turn.kind == TurnKind.close:
            yield Close("the interview is complete")

    async def _prefetch_next(self, session_id: str, voice: str | None) -> None:
        for line in await self.service.anticipated_lines(session_id):
            self.speech.cache.prefetch(line, voice)

    async def _prefetch_current(self, session_id: str) -> None:
        try:
            row = await self.service.open_session(session_id)
        except (SessionClosed, SessionNotFound):
            return
        line = await self.service.current_line(session_id)
        if line is not None:
            self.speech.cache.prefetch(line.text, self.service.voice_for(row))

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


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
