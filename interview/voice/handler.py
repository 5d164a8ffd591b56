"""The per-connection FastRTC handler: ReplyOnPause with our turn detection and no idle spin."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import numpy as np
from fastrtc import AlgoOptions, ReplyOnPause
from fastrtc.reply_on_pause import AppState, ReplyFnGenerator

from interview.speech.vad import SAMPLE_RATE, SileroVAD
from interview.voice.turn_detector import DetectorOptions, Turn, TurnDetector, TurnEvent

# How long emit() waits for work before handing control back. fastrtc calls emit() again at
# once when it returns None, so without this wait a silent connection spins a whole core. The
# wait ends the moment a turn ends, so its length costs no latency, only how often an idle
# connection wakes up (and how long a closing connection's emit thread lingers).
IDLE_WAIT_SECONDS = 0.5

TurnListener = Callable[["InterviewHandler", TurnEvent], None]


class InterviewHandler(ReplyOnPause):
    """Receives 16 kHz mono audio, ends turns with a TurnDetector, and runs the reply function.

    The candidate is not heard while the interviewer speaks (no barge-in): in a browser the
    interviewer's own voice would otherwise be taken for an answer wherever echo cancellation
    falls short.
    """

    def __init__(
        self,
        fn: ReplyFnGenerator,
        startup_fn: Callable[..., Any] | None,
        vad: SileroVAD,
        options: DetectorOptions,
        on_turn_event: TurnListener | None = None,
    ) -> None:
        super().__init__(
            fn,
            startup_fn=startup_fn,
            algo_options=AlgoOptions(),
            can_interrupt=False,
            output_sample_rate=24_000,
            input_sample_rate=SAMPLE_RATE,
            model=vad,
        )
        self.vad = vad
        self.detector_options = options
        self.on_turn_event = on_turn_event
        self.detector = TurnDetector(vad.stream(), options)
        self.last_turn: Turn | None = None
        self.session_id: str | None = None  # set by the gateway once the offer is accepted
        # Stretches of the current answer being transcribed: (end sample, text future).
        self.segments: list[tuple[int, Future[str]]] = []
        # When the candidate's audio last arrived (monotonic), None before the first frame.
        self.last_frame_at: float | None = None

    def copy(self) -> InterviewHandler:
        # fastrtc copies the handler for every connection; each copy has its own VAD state.
        return InterviewHandler(
            self.fn, self.startup_fn, self.vad, self.detector_options, self.on_turn_event
        )

    def receive(self, frame: tuple[int, np.ndarray]) -> None:
        # A browser sends audio every 20 ms while connected, muted or not; audio that stops
        # means the page or its network is gone, long before ICE gives up (~30 s).
        self.last_frame_at = time.monotonic()
        super().receive(frame)

    def media_silent_for(self) -> float | None:
        """Seconds since the candidate's last audio frame; None if none has arrived yet."""
        if self.last_frame_at is None:
            return None
        return time.monotonic() - self.last_frame_at

    def process_audio(self, audio: tuple[int, np.ndarray], state: AppState) -> None:
        rate, samples = audio
        if rate != SAMPLE_RATE:
            raise ValueError(f"expected {SAMPLE_RATE} Hz input, got {rate}")
        state.sampling_rate = rate
        event = self.detector.feed(np.squeeze(samples), now=time.time())
        if event is TurnEvent.turn_ended:
            self.last_turn = self.detector.take_turn(now=time.time())
            state.stream = self.last_turn.audio.reshape(1, -1)
            state.pause_detected = True
        if event is not None and self.on_turn_event is not None:
            self.on_turn_event(self, event)

    def draft_audio(self) -> np.ndarray:
        """The current answer so far, to transcribe its finished part during a pause."""
        return self.detector.current_audio()

    def reset(self) -> None:
        # The detector first: once super() clears `responding`, receive() feeds it again.
        self.detector.reset()
        self.segments = []
        super().reset()

    def emit(self) -> Any:
        if not self.event.is_set():
            self.event.wait(IDLE_WAIT_SECONDS)
        return super().emit()
