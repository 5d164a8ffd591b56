"""Silero voice activity detection, run from its ONNX file with onnxruntime.

The `silero-vad` package ships the model but imports torch; `make models` takes only the ONNX
file out of its wheel. One InferenceSession is shared (onnxruntime's run() is thread-safe); each
audio stream keeps its own recurrent state in a `VadStream`, which skips the model on frames
too quiet to hold speech once the model has already judged the stream silent (an energy gate:
a connected browser sends 50 near-silent frames a second while nobody speaks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

SAMPLE_RATE = 16_000
FRAME = 512  # samples per model step at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous frame the v5/v6 graph expects in front of each frame
FRAME_SECONDS = FRAME / SAMPLE_RATE
_SR = np.array(SAMPLE_RATE, dtype=np.int64)
# The energy gate. Once the model has judged GATE_SETTLE_FRAMES quiet frames in a row silent
# (probability < GATE_AFTER), further quiet frames are not given to it: they score 0.0 and the
# recurrent state stays where the model left it, on silence. The first frame at or above
# GATE_DBFS (RMS of the frame with its context) runs the model again. Speech, its decay and
# short pauses inside an answer always run the model, so they are timed as without the gate.
# GATE_DBFS is conservative by measurement (espeak-ng speech through the model): the quietest
# frame on which the model's probability rose from < 0.1 was -52 dBFS for speech at -30 dBFS,
# -63 dBFS at -40 dBFS and -72 dBFS at -50 dBFS; tests/speech/test_vad.py checks that onsets at
# -20 to -40 dBFS fall on the same frame with and without the gate. Opus's decoded digital
# silence and a noise-suppressed browser microphone's floor lie below it.
GATE_DBFS = -70.0
GATE_AFTER = 0.1
GATE_SETTLE_FRAMES = 16  # 0.5 s
_GATE_ENERGY = (10 ** (GATE_DBFS / 20)) ** 2 * (FRAME + CONTEXT)  # sum of squares of a window


class SileroVAD:
    def __init__(self, onnx_path: Path, threshold: float = 0.5) -> None:
        self.onnx_path = onnx_path
        self.threshold = threshold
        self._session: ort.InferenceSession | None = None

    def load(self) -> None:
        options = ort.SessionOptions()
        # Each call is tiny (~0.15 ms); more threads only add scheduling cost.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        # Idle threads must not spin waiting for work between 32 ms frames.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(self.onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def stream(self) -> VadStream:
        return VadStream(self)

    def _run(
        self, frame: NDArray[np.float32], state: NDArray[np.float32]
    ) -> tuple[float, NDArray[np.float32]]:
        if self._session is None:
            self.load()
        assert self._session is not None
        out, new_state = self._session.run(
            None, {"input": frame[np.newaxis, :], "state": state, "sr": _SR}
        )
        return float(out[0][0]), new_state

    # fastrtc's PauseDetectionModel protocol

    def vad(
        self, audio: tuple[int, NDArray[np.int16] | NDArray[np.float32]], options: Any
    ) -> tuple[float, list[dict[str, int]]]:
        """Seconds of speech in a clip, and the speech chunks (sample offsets at 16 kHz)."""
        rate, samples = audio
        if rate != SAMPLE_RATE:
            raise ValueError(f"SileroVAD expects {SAMPLE_RATE} Hz audio, got {rate}")
        stream = self.stream()
        chunks: list[dict[str, int]] = []
        for start, probability in stream.feed(samples):
            if probability >= self.threshold:
                if chunks and chunks[-1]["end"] == start:
                    chunks[-1]["end"] = start + FRAME
                else:
                    chunks.append({"start": start, "end": start + FRAME})
        speech = sum(c["end"] - c["start"] for c in chunks) / SAMPLE_RATE
        return speech, chunks

    def warmup(self) -> None:
        self.vad((SAMPLE_RATE, np.zeros(SAMPLE_RATE, dtype=np.float32)), None)


class VadStream:
    """Speech probabilities for consecutive 32 ms frames of one audio stream."""

    def __init__(self, vad: SileroVAD, gate: bool = True) -> None:
        self._vad = vad
        self._gate = gate
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        # The model's input: the previous frame's last CONTEXT samples, then the frame. Audio is
        # gathered here in place, so a frame costs no new arrays.
        self._window = np.zeros(CONTEXT + FRAME, dtype=np.float32)
        self._filled = 0  # samples of the current frame in the window so far
        self._offset = 0  # samples consumed, to report each frame's start
        self._settled = 0  # consecutive quiet frames the model judged silent
        self.model_runs = 0  # frames the model was run on (the rest were gated)

    def feed(self, samples: NDArray[np.int16] | NDArray[np.float32]) -> list[tuple[int, float]]:
        """Add audio; returns (start sample, speech probability) for each completed frame."""
        audio = to_float32(samples)
        window, results = self._window, []
        used = 0
        while used < len(audio):
            take = min(FRAME - self._filled, len(audio) - used)
            start = CONTEXT + self._filled
            window[start : start + take] = audio[used : used + take]
            self._filled += take
            used += take
            if self._filled == FRAME:
                results.append((self._offset, self._judge(window)))
                window[:CONTEXT] = window[-CONTEXT:]
                self._filled = 0
                self._offset += FRAME
        return results

    def _judge(self, window: NDArray[np.float32]) -> float:
        """The speech probability of the frame in `window` (see GATE_DBFS)."""
        quiet = np.dot(window, window) < _GATE_ENERGY
        if self._gate and quiet and self._settled >= GATE_SETTLE_FRAMES:
            return 0.0
        probability, self._state = self._vad._run(window, self._state)
        self.model_runs += 1
        self._settled = self._settled + 1 if quiet and probability < GATE_AFTER else 0
        return probability


def to_float32(samples: NDArray[np.int16] | NDArray[np.float32]) -> NDArray[np.float32]:
    flat = np.asarray(samples).reshape(-1)
    if flat.dtype == np.int16:
        return flat.astype(np.float32) / 32768.0
    return flat.astype(np.float32, copy=False)
