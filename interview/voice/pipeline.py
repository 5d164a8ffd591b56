"""One spoken turn: the candidate's audio in, the interviewer's voice out.

  end of answer -> speech-to-text -> commit the answer -> interviewer -> commit its line
                -> text-to-speech sentence by sentence -> audio frames to the candidate

A line cut by the candidate is stored as far as it was heard; a reply withdrawn because the
answer went on is replaced by the reply to the whole answer; a long silence after a question
gets one gentle check-in.

Model calls run in a small thread pool sized for the cores, never on the event loop, so one
session's transcription does not freeze another's audio.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
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
from interview.sessions import (
    AnswerOutcome,
    InterviewService,
    InvalidAnswer,
    SessionClosed,
    SpokenAudio,
)
from interview.speech.stack import LoadState, SpeechStack
from interview.speech.stt.base import STT_SAMPLE_RATE
from interview.store import TurnRow
from interview.voice.floor import Floor, FloorState
from interview.voice.listener import BargeInOptions, EndOfTurnPolicy, Listener
from interview.voice.rtc import Close, Output
from interview.voice.speaker import LinePlayer
from interview.voice.streamed_line import StreamedLine
from interview.voice.turn_detector import DetectorOptions, Turn, TurnDetector, TurnEvent

log = structlog.get_logger(__name__)

# How often a check-in wait looks for the candidate's first word.
CHECK_IN_POLL_SECONDS = 0.25


@dataclass(frozen=True)
class ConversationOptions:
    """How the interviewer takes turns (Settings tune it)."""

    detector: DetectorOptions = field(default_factory=DetectorOptions)
    barge_in: BargeInOptions = field(default_factory=BargeInOptions)
    # Silence after a question before the interviewer checks in, once; 0 never checks in.
    check_in_after: float = 10.0
    check_in_line: str = "Take your time; tell me when you're ready."


class VoicePipeline:
    def __init__(
        self,
        service: InterviewService,
        speech: SpeechStack,
        events: EventBus,
        policy: EndOfTurnPolicy,
        options: ConversationOptions | None = None,
    ) -> None:
        self.service = service
        self.speech = speech
        self.events = events
        self.policy = policy
        self.options = options or ConversationOptions()
        self._tasks: set[asyncio.Task[Any]] = set()
        events.add_listener(self._on_event)

    # what interview.voice.rtc calls for each connection

    def listener_for(self, session_id: str) -> Listener:
        """The ear of a new connection of `session_id`."""
        engines = self.speech.engines
        compute = self.speech.compute
        turn_model = engines.turn
        return Listener(
            session_id,
            TurnDetector(engines.vad.stream(), self.options.detector),
            transcribe=lambda audio: compute.submit(engines.stt.transcribe, audio),
            notify=self._heard,
            policy=self.policy,
            judge=lambda audio: self.speech.judging.submit(turn_model.probability, audio),
            floor=Floor(),
            options=self.options.barge_in,
        )

    async def greet(self, session_id: str, listener: Listener) -> AsyncIterator[Output]:
        """Speak the interviewer's current line as soon as the connection is up."""
        async for output in self._guarded(session_id, listener, self._greet(session_id, listener)):
            yield output

    async def reply(self, session_id: str, listener: Listener) -> AsyncIterator[Output]:
        """Answer the candidate's answer that `listener` has just ended."""
        async for output in self._guarded(session_id, listener, self._reply(session_id, listener)):
            yield output

    async def _guarded(
        self, session_id: str, listener: Listener, outputs: AsyncIterator[Output]
    ) -> AsyncIterator[Output]:
        # A failing model or database must not take the connection down silently: the
        # client hears nothing more for this turn, but is told why and can go on.
        floor = listener.floor
        floor.bind(asyncio.get_running_loop())
        generation = floor.generation
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
        finally:
            floor.done(generation)

    async def _greet(self, session_id: str, listener: Listener) -> AsyncIterator[Output]:
        try:
            row = await self.service.open_session(session_id)
        except (SessionClosed, SessionNotFound):
            yield Close("the interview has ended")
            return
        voice = self.service.voice_for(row)
        line = await self.service.current_line(session_id)
        if line is not None:
            spoken = StreamedLine.of(self.speech.cache, voice, line.text)
            async for frame in self._speak(
                session_id, listener, spoken, lambda: _known(line), heard_at=None
            ):
                yield frame
        await self._prefetch_next(session_id, voice)

    async def _reply(self, session_id: str, listener: Listener) -> AsyncIterator[Output]:
        turn = listener.last_turn
        continues = listener.last_turn_continues
        if turn is None:
            return
        self.events.publish(session_id, CandidateChanged(state=CandidateState.transcribing))
        # Until the reply's first audio, the accurate pass stands still (speech/activity.py).
        activity = self.speech.activity
        activity.enter()
        making = True
        try:
            async for output in self._make_reply(session_id, listener, turn, continues):
                if making and not isinstance(output, Close):
                    activity.leave()
                    making = False
                yield output
        finally:
            if making:
                activity.leave()

    async def _make_reply(
        self, session_id: str, listener: Listener, turn: Turn, continues: bool
    ) -> AsyncIterator[Output]:
        marks = {"end_of_turn": time.time()}
        text = await listener.transcript(turn)
        marks["stt"] = time.time()
        if not text and not continues:
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
                continues=continues,
                audio=SpokenAudio(
                    pcm=turn.audio.astype("<i2", copy=False).tobytes(),
                    sample_rate=STT_SAMPLE_RATE,
                    started_at=_utc(turn.audio_started),
                ),
            )
        )
        answering.add_done_callback(lambda task: _settle(line, task))
        first = True
        try:
            async for frame in self._speak(
                session_id,
                listener,
                line,
                lambda: _interviewer_turn(answering),
                heard_at=turn.speech_ended,
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
        except InvalidAnswer:
            # Went on after a reply with nothing worth a word (a cough), and there was no
            # withdrawn reply to take up again: nothing to answer.
            self.events.publish(session_id, CandidateChanged(state=CandidateState.nothing_heard))
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
        listener: Listener,
        line: StreamedLine,
        spoken_turn: Callable[[], Awaitable[TurnRow]],
        heard_at: float | None,
    ) -> AsyncIterator[Output]:
        cache = self.speech.cache
        player = LinePlayer(
            line,
            listener.floor,
            cache.sample_rate,
            lambda state: self._speaking(session_id, state),
            reply=heard_at is not None,
            estimated_seconds=cache.estimated_seconds,
        )
        latency_ms: int | None = None
        async for output in player.play():
            if latency_ms is None and heard_at is not None and not isinstance(output, Close):
                latency_ms = round((time.time() - heard_at) * 1000)
            yield output
        # Played out (or cut): from now on the candidate's speech is an answer, not a barge-in.
        listener.floor.done(player.generation)
        playback = player.playback
        turn = await spoken_turn()
        if playback.cut is not None:
            await self.service.interrupt_line(
                session_id, turn.index, heard=playback.heard_text, interruption=playback.cut
            )
            log.info(
                "line_interrupted",
                session_id=session_id,
                index=turn.index,
                interruption=playback.cut.value,
                heard_seconds=round(playback.seconds, 2),
            )
            return
        if playback.started_at is None:
            return
        started = datetime.fromtimestamp(playback.started_at, UTC)
        ended = datetime.fromtimestamp(playback.started_at + playback.seconds, UTC)
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
                seconds=round(playback.seconds, 2),
                latency_ms=latency_ms,
            ),
        )
        log.info(
            "reply_spoken",
            session_id=session_id,
            index=turn.index,
            audio_seconds=round(playback.seconds, 2),
            latency_ms=latency_ms,
        )
        listener.patience = await self.service.patience(session_id)
        if turn.kind == TurnKind.close:
            # Only once the line has played, so its last words are heard.
            yield Close("the interview is complete")
            return
        if turn.kind in (TurnKind.question, TurnKind.follow_up):
            async for output in self._check_in(session_id, listener, line.voice):
                yield output

    async def _check_in(
        self, session_id: str, listener: Listener, voice: str | None
    ) -> AsyncIterator[Output]:
        """After a question, wait for the candidate's first word; after a long silence, check
        in gently, once."""
        wait = self.options.check_in_after
        if wait <= 0:
            return
        asked = time.monotonic()
        floor = listener.floor
        # Ready before it is needed: synthesis takes a moment on a busy machine.
        self.speech.cache.prefetch(self.options.check_in_line, voice)
        while time.monotonic() - asked < wait:
            heard = listener.last_onset_at
            if (heard is not None and heard >= asked) or listener.detector.speaking:
                return  # the candidate is answering: the floor is theirs
            if floor.state is not FloorState.speaking and floor.state is not FloorState.listening:
                return
            await asyncio.sleep(CHECK_IN_POLL_SECONDS)
        turn = await self.service.check_in(session_id, self.options.check_in_line)
        if turn is None:
            return
        log.info("checked_in", session_id=session_id, index=turn.index, after_seconds=wait)
        spoken = StreamedLine.of(self.speech.cache, voice, turn.text)
        player = LinePlayer(
            spoken,
            floor,
            self.speech.cache.sample_rate,
            lambda state: self._speaking(session_id, state),
            reply=False,
        )
        async for output in player.play():
            yield output
        floor.done(player.generation)
        if player.playback.cut is not None:
            await self.service.interrupt_line(
                session_id,
                turn.index,
                heard=player.playback.heard_text,
                interruption=player.playback.cut,
            )

    def _speaking(self, session_id: str, state: SpeakingState) -> None:
        if state is SpeakingState.started:
            log.info("first_audio", session_id=session_id)
        self.events.publish(session_id, InterviewerSpeaking(state=state))

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
