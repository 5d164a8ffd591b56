"""Local Kokoro-82M through kokoro-onnx, with English voices assembled by `make models`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from kokoro_onnx import Kokoro
from numpy.typing import NDArray

KOKORO_SAMPLE_RATE = 24_000


class KokoroTTS:
    sample_rate = KOKORO_SAMPLE_RATE

    def __init__(
        self,
        model_path: Path,
        voices_path: Path,
        default_voice: str = "af_heart",
        speed: float = 1.0,
        threads: int = 2,
    ) -> None:
        options = ort.SessionOptions()
        # One synthesis at a time uses the cores; more would only slow each other down.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._kokoro = Kokoro.from_session(session, str(voices_path))
        self.voices = frozenset(self._kokoro.get_voices())
        if default_voice not in self.voices:
            raise ValueError(f"unknown voice {default_voice!r}; known: {sorted(self.voices)}")
        self.default_voice = default_voice
        self.speed = speed

    def synthesize(self, text: str, voice: str | None = None) -> NDArray[np.float32]:
        chosen = voice if voice in self.voices else self.default_voice
        samples, rate = self._kokoro.create(text, voice=chosen, speed=self.speed, lang="en-us")
        if rate != self.sample_rate:
            raise RuntimeError(f"Kokoro returned {rate} Hz audio, expected {self.sample_rate}")
        return np.asarray(samples, dtype=np.float32)

    def warmup(self) -> None:
        # The first call after load is several times slower than the rest.
        self.synthesize("Hello, and welcome to the interview.")
