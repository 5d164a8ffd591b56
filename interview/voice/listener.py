"""One voice connection's ear: hears the candidate all the time, ends each answer when the
evidence says it is finished, and yields the floor when the candidate speaks over the interviewer.

- End of turn: after a short silence the pause is judged from the audio (an end-of-turn model such
  as Smart Turn) and the words so far (each finished stretch is transcribed during the pause); the
  policy turns that evidence into how long this pause must last (interview.voice.endpointing).
- Barge-in: while the interviewer speaks, the first moment of the candidate's speech pauses it;
  a backchannel ("mm-hm") or a noise resumes the line, real speech abandons it. The interviewer's
  own voice coming back as echo is not taken for the candidate's (interview.voice.floor).
- Repair: speech that starts while a reply is being made, or just after it began, means the
  answer was not finished: the reply is withdrawn and the two stretches become one answer.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np
import structlog
from numpy.typing import NDArray

from interview.domain import Interruption
from interview.speech.vad import SAMPLE_RATE, to_float32
from interview.voice.floor import Floor, FloorState
from interview.voice.turn_detector import Turn, TurnDetector, TurnEvent

log = structlog.get_logger(__name__)

# Stretches shorter than this (0.3 s) hold no word worth a transcription call.
MIN_STRETCH_SAMPLES = int(0.3 * SAMPLE_RATE)
# The end-of-turn model reads at most the answer's last 8 s.
JUDGED_SAMPLES = 8 * SAMPLE_RATE
# Speech over the interviewer longer than this is never a backchannel.
MAX_BACKCHANNEL_SECONDS = 1.2
# Speech added after a backchannel was recognised that still lets it count as one.
BACKCHANNEL_SLACK_SECONDS = 0.25
# Short replies that keep the interviewer going: listening noises, not a request for the floor.
BACKCHANNELS = frozenset(
    {
        "mm", "mmm", "mhm", "mm-hm", "mm-hmm", "hm", "hmm", "uh-huh", "uh", "um", "ah", "aha",
        "yeah", "yes", "yep", "yup", "ok", "okay", "right", "sure", "cool", "nice", "great",
        "alright", "got", "it", "i", "see", "oh",
    }
)  # fmt: skip

T = TypeVar("T")
D = TypeVar("D")

# Starts transcribing a stretch of speech (16 kHz mono float32) off the event loop.
Transcribe = Callable[[NDArray[np.float32]], "Future[str]"]
# Starts judging whether an answer (16 kHz mono float32, its last 8 s) is finished: P(finished).
Judge = Callable[[NDArray[np.float32]], "Future[float]"]
# Told what the candidate does, as it happens (from the audio thread).
Notify = Callable[[str, TurnEvent], None]


class EndOfTurnPolicy(Protocol):
    """How long a pause must last before the answer counts as finished, from the evidence
    (interview.voice.endpointing.EndpointingPolicy)."""

    def required_silence(
        self, probability: float | None, text: str | None, *, patience: float = 1.0
    ) -> float: ...


@dataclass(frozen=True)
class FixedSilence:
    """The policy that weighs no evidence: every answer ends after the same silence (how the
    service worked before issue 11; END_OF_TURN_POLICY=silence)."""

    seconds: float

    def required_silence(
        self, probability: float | None, text: str | None, *, patience: float = 1.0
    ) -> float:
        return self.seconds


@dataclass(frozen=True)
class BargeInOptions:
    # Speech over the interviewer after which its words are judged (a backchannel resumes the
    # line, anything else cuts it); shorter speech is judged at its pause.
    abandon_after_speech: float = 0.4
    # Speech within this long of a reply's first audio (or before it) continues the answer.
    repair_window: float = 1.5
    # The candidate's voice must be this much louder than the loudest interviewer audio that
    # may still echo back (dB, relative): residual echo after a browser's echo cancellation is
    # far below it, and even an uncancelled -10 dB echo stays under.
    echo_margin_db: float = -8.0


@dataclass
class _Judging:
    """The evidence on one pause, on its way."""

    probability: Future[float] | None
    texts: list[Future[str]]


class Listener:
    """Implements interview.voice.rtc.Ear for one session's connection."""

    def __init__(
        self,
        session_id: str,
        detector: TurnDetector,
        transcribe: Transcribe,
        notify: Notify,
        *,
        policy: EndOfTurnPolicy,
        judge: Judge | None = None,
        floor: Floor | None = None,
        options: BargeInOptions | None = None,
    ) -> None:
        self.session_id = session_id
        self.detector = detector
        self.floor = floor or Floor()
        self.policy = policy
        self.options = options or BargeInOptions()
        # A plan may ask for more patience on reflective questions (the pipeline sets it).
        self.patience = 1.0
        self._transcribe = transcribe
        self._judge = judge
        self._notify = notify
        self._echo_ratio = 10 ** (self.options.echo_margin_db / 20)
        # The answer being given: (end sample, transcription) of each stretch started so far.
        self._stretches: list[tuple[int, Future[str]]] = []
        self._judging: _Judging | None = None
        self._backchannel: Future[str] | None = None
        # Speech seconds judged a backchannel so far (while the candidate was still speaking).
        self._backchannel_until: float | None = None
        self._backchannel_speech = 0.0
        self._continues = False
        # Monotonic time of the candidate's latest onset of speech.
        self.last_onset_at: float | None = None
        # The last finished answer and its stretches, until the reply takes them.
        self.last_turn: Turn | None = None
        self.last_turn_continues = False
        self._answer_stretches: list[tuple[int, Future[str]]] = []

    def hear(self, samples: NDArray[np.int16]) -> bool:
        samples = np.asarray(samples, dtype=np.int16).reshape(-1)
        event = self.detector.feed(samples, now=time.time(), mute=self._is_echo(samples))
        if event is TurnEvent.turn_ended:
            self.last_turn = self.detector.take_turn(now=time.time())
            self.last_turn_continues, self._continues = self._continues, False
            self._answer_stretches, self._stretches = self._stretches, []
            self._judging = self._backchannel = None
            self.floor.replying()
        try:
            if event is TurnEvent.onset:
                self._on_onset()
            elif event is TurnEvent.speech_started:
                self._stretches = []
            elif event is TurnEvent.pause and self.floor.state is not FloorState.paused:
                # (While the line holds, the barge-in judgement transcribes what was said.)
                self._start_stretch()
                self._on_pause()
            elif event is TurnEvent.resumed:
                self._judging = None
            if self.floor.state is FloorState.paused:
                self._judge_barge_in()
            elif self._judging is not None:
                self._apply_judgement()
            if event is not None:
                self._notify(self.session_id, event)
        except Exception:
            # Called from fastrtc's audio loop, which dies on any exception: the interviewer
            # would go deaf.
            log.exception("turn_event_failed", session_id=self.session_id)
        return event is TurnEvent.turn_ended

    def reset(self) -> None:
        self.detector.reset()
        self._stretches = []
        self._judging = self._backchannel = None

    async def transcript(self, turn: Turn) -> str:
        """The text of a finished answer: its stretches transcribed during pauses, then the
        rest."""
        stretches, self._answer_stretches = self._answer_stretches, []
        audio = turn.audio
        covered = stretches[-1][0] if stretches else 0
        futures = [future for end, future in stretches if end <= len(audio)]
        if len(audio) - covered >= MIN_STRETCH_SAMPLES or not futures:
            futures.append(self._transcribe(to_float32(audio[covered:])))
        texts = [(await asyncio.wrap_future(future)).strip() for future in futures]
        return " ".join(text for text in texts if text)

    # internals

    def _is_echo(self, samples: NDArray[np.int16]) -> bool:
        """Whether these samples may be only the interviewer's voice coming back."""
        echo = self.floor.echo_level()
        if echo <= 0.0 or not len(samples):
            return False
        level = float(np.sqrt(np.mean(np.square(samples.astype(np.float32) / 32768.0))))
        return level < echo * self._echo_ratio

    def _on_onset(self) -> None:
        self.last_onset_at = time.monotonic()
        floor = self.floor
        state = floor.state
        if state is FloorState.replying or (
            state is FloorState.speaking
            and floor.reply_audio_at is not None
            and time.monotonic() - floor.reply_audio_at <= self.options.repair_window
        ):
            # The answer was not finished: the reply is withdrawn, the answer goes on.
            if floor.abandon(Interruption.withdrawn):
                self._continues = True
                log.info("answer_resumed", session_id=self.session_id, during=state.value)
        elif state is FloorState.speaking and floor.pause():
            self._backchannel = self._backchannel_until = None
            log.info("barge_in_paused", session_id=self.session_id)

    def _judge_barge_in(self) -> None:
        """While the line holds: words that are not a backchannel abandon it; a backchannel or
        a noise, once the candidate stops, resumes it."""
        detector = self.detector
        if detector.speech_seconds >= MAX_BACKCHANNEL_SECONDS:
            self._abandon("(long speech)")
            return
        pausing = detector.silence >= detector.options.decide_after
        judged = self._backchannel_until
        if (
            pausing
            and judged is not None
            and detector.speech_seconds - judged <= BACKCHANNEL_SLACK_SECONDS
        ):
            # Judged a backchannel while it was said, and little was added since.
            self._resume("(backchannel)")
            return
        if self._backchannel is None:
            if pausing or detector.speech_seconds >= self.options.abandon_after_speech:
                audio = detector.current_audio()
                if not len(audio):
                    self._resume("")
                    return
                self._backchannel = self._transcribe(to_float32(audio.copy()))
                self._backchannel_speech = detector.speech_seconds
            return
        if not self._backchannel.done():
            return
        text = _safe_result(self._backchannel, "")
        # Letters, apostrophes and hyphens only: Whisper writes a hum as "M&HM." too.
        words = [re.sub(r"[^a-z'-]", "", w.lower()) for w in text.split()]
        words = [w for w in words if w]
        if not all(_backchannel_word(w) for w in words) or len(words) > 2:
            self._abandon(text)  # "Sorry?", "Wait", a real sentence: the floor is theirs
        elif pausing:
            self._resume(text)
        else:
            # Still speaking: a backchannel so far; resumed at the pause unless more follows.
            self._backchannel = None
            self._backchannel_until = self._backchannel_speech

    def _abandon(self, heard: str) -> None:
        self._backchannel = None
        self._backchannel_until = None
        if self.floor.abandon(Interruption.barge_in):
            # How many words, never which: they are the candidate's (logs hold no answer text).
            log.info(
                "barge_in_abandoned", session_id=self.session_id, heard_words=len(heard.split())
            )

    def _resume(self, heard: str) -> None:
        self._backchannel = None
        self._backchannel_until = None
        if self.floor.resume():
            # The backchannel is not an answer: the next one starts afresh.
            self.reset()
            log.info("barge_in_resumed", session_id=self.session_id, heard_words=len(heard.split()))

    def _on_pause(self) -> None:
        audio = self.detector.current_audio()
        probability = None
        if self._judge is not None and len(audio):
            probability = self._judge(to_float32(audio[-JUDGED_SAMPLES:].copy()))
        self._judging = _Judging(probability, [future for _end, future in self._stretches])

    def _apply_judgement(self) -> None:
        judging = self._judging
        assert judging is not None
        if judging.probability is not None and not judging.probability.done():
            return
        if not all(future.done() for future in judging.texts):
            return
        self._judging = None
        probability = None
        if judging.probability is not None:
            probability = _safe_result(judging.probability, None)
        texts = [_safe_result(future, "").strip() for future in judging.texts]
        text = " ".join(t for t in texts if t) if judging.texts else None
        required = self.policy.required_silence(probability, text, patience=self.patience)
        self.detector.end_after(required)
        log.debug(
            "pause_judged",
            session_id=self.session_id,
            probability=None if probability is None else round(probability, 3),
            words=None if text is None else len(text.split()),
            required_silence=round(required, 2),
        )

    def _start_stretch(self) -> None:
        start = self._stretches[-1][0] if self._stretches else 0
        audio = self.detector.current_audio()
        if len(audio) - start >= MIN_STRETCH_SAMPLES:
            piece = to_float32(audio[start:].copy())
            self._stretches.append((len(audio), self._transcribe(piece)))


def _backchannel_word(word: str) -> bool:
    # Whisper spells humming many ways: "Mm-mm.", "Mhm", "Hmm-hmm", "Uh-huh".
    return word in BACKCHANNELS or (len(word) <= 10 and set(word) <= set("mhu-"))


def _safe_result(future: Future[T], default: D) -> T | D:
    """A finished future's result; `default` when it failed (a failed model call must not
    take the ear down: the patient fallback still ends the answer)."""
    try:
        return future.result()
    except Exception:
        log.exception("listener_evidence_failed")
        return default
