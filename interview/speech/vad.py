"""Silero voice activity detection, run from its ONNX file with onnxruntime.

The `silero-vad` package ships the model but imports torch; `make models` takes only the ONNX
file out of its wheel. One InferenceSession is shared (onnxruntime's run() is thread-safe); each
audio stream keeps its own recurrent state in a `VadStream`.
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
            None,
            {
                "input": frame[np.newaxis, :],
                "state": state,
                "sr": np.array(SAMPLE_RATE, dtype=np.int64),
            },
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

    def __init__(self, vad: SileroVAD) -> None:
        self._vad = vad
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._offset = 0  # samples consumed, to report each frame's start

    def feed(self, samples: NDArray[np.int16] | NDArray[np.float32]) -> list[tuple[int, float]]:
        """Add audio; returns (start sample, speech probability) for each completed frame."""
        audio = to_float32(samples)
        pending = np.concatenate((self._pending, audio)) if self._pending.size else audio
        results = []
        usable = len(pending) - len(pending) % FRAME
        for start in range(0, usable, FRAME):
            frame = pending[start : start + FRAME]
            probability, self._state = self._vad._run(
                np.concatenate((self._context, frame)), self._state
            )
            self._context = frame[-CONTEXT:]
            results.append((self._offset, probability))
            self._offset += FRAME
        self._pending = pending[usable:]
        return results


def to_float32(samples: NDArray[np.int16] | NDArray[np.float32]) -> NDArray[np.float32]:
    flat = np.asarray(samples).reshape(-1)
    if flat.dtype == np.int16:
        return flat.astype(np.float32) / 32768.0
    return flat.astype(np.float32, copy=False)
