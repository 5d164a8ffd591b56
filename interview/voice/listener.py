"""One voice connection's ear: ends each of the candidate's answers with a TurnDetector, and has
an answer's finished stretches transcribed while the candidate pauses, so a long answer is mostly
text by the time it ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np
import structlog
from numpy.typing import NDArray

from interview.speech.vad import SAMPLE_RATE, to_float32
from interview.voice.turn_detector import Turn, TurnDetector, TurnEvent

log = structlog.get_logger(__name__)

# Stretches shorter than this (0.3 s) hold no word worth a transcription call.
MIN_STRETCH_SAMPLES = int(0.3 * SAMPLE_RATE)

# Starts transcribing a stretch of speech (16 kHz mono float32) off the event loop.
Transcribe = Callable[[NDArray[np.float32]], "Future[str]"]
# Told what the candidate does, as it happens (from the audio thread).
Notify = Callable[[str, TurnEvent], None]


class Listener:
    """Implements interview.voice.rtc.Ear for one session's connection."""

    def __init__(
        self, session_id: str, detector: TurnDetector, transcribe: Transcribe, notify: Notify
    ) -> None:
        self.session_id = session_id
        self.detector = detector
        self._transcribe = transcribe
        self._notify = notify
        # The answer being given: (end sample, transcription) of each stretch started so far.
        self._stretches: list[tuple[int, Future[str]]] = []
        # The last finished answer and its stretches, until the reply takes them.
        self.last_turn: Turn | None = None
        self._answer_stretches: list[tuple[int, Future[str]]] = []

    def hear(self, samples: NDArray[np.int16]) -> bool:
        event = self.detector.feed(samples, now=time.time())
        if event is TurnEvent.turn_ended:
            self.last_turn = self.detector.take_turn(now=time.time())
            self._answer_stretches, self._stretches = self._stretches, []
        try:
            if event is TurnEvent.speech_started:
                self._stretches = []
            elif event is TurnEvent.pause:
                self._start_stretch()
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

    def _start_stretch(self) -> None:
        start = self._stretches[-1][0] if self._stretches else 0
        audio = self.detector.current_audio()
        if len(audio) - start >= MIN_STRETCH_SAMPLES:
            piece = to_float32(audio[start:].copy())
            self._stretches.append((len(audio), self._transcribe(piece)))
