"""Local Kokoro-82M through kokoro-onnx, with English voices assembled by `make models`."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from interview.speech.tts.base import Speech

KOKORO_SAMPLE_RATE = 24_000
# How Kokoro names its voices: language and gender letters, "_", a name ("af_heart"). Plans and
# sessions name voices this way whichever engine speaks (the local one answers when a remote one
# fails), so a name of another form is refused before any engine is loaded.
VOICE_NAME = re.compile(r"^[a-z]{2}_[a-z0-9]+$")


class KokoroTTS:
    name = "kokoro"
    sample_rate = KOKORO_SAMPLE_RATE

    def __init__(
        self,
        model_path: Path,
        voices_path: Path,
        model_id: str,
        default_voice: str = "af_heart",
        speed: float = 1.0,
        threads: int = 2,
    ) -> None:
        # Imported here: naming a voice (VOICE_NAME) must not load onnxruntime.
        import onnxruntime as ort
        from kokoro_onnx import Kokoro

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
        # The model file's checksum and the speed decide the audio, besides voice and text.
        self.cache_key = f"kokoro|{model_id}|{speed}"

    @staticmethod
    def names_a_voice(name: str) -> bool:
        """Whether `name` has the form of a Kokoro voice's name (VOICE_NAME)."""
        return VOICE_NAME.fullmatch(name) is not None

    def synthesize(self, text: str, voice: str | None = None) -> Speech:
        chosen = voice if voice in self.voices else self.default_voice
        samples, rate = self._kokoro.create(text, voice=chosen, speed=self.speed, lang="en-us")
        if rate != self.sample_rate:
            raise RuntimeError(f"Kokoro returned {rate} Hz audio, expected {self.sample_rate}")
        return Speech(np.asarray(samples, dtype=np.float32), self.cache_key)

    def warmup(self) -> None:
        # The first call after load is several times slower than the rest.
        self.synthesize("Hello, and welcome to the interview.")
