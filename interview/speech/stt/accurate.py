"""The accurate speech-to-text pass's engine: Whisper through faster-whisper, with word timings.

A minimal stand-in written against the issue 14 design contract (Helper B's branch), so the
pass runner can be built and tested; Helper A's module replaces it at merge.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from interview.config import Settings


@dataclass(frozen=True)
class TimedWord:
    word: str  # as Whisper gives it, leading space included
    start: float  # seconds from the start of the audio given
    end: float


@dataclass(frozen=True)
class TimedTranscript:
    words: tuple[TimedWord, ...]

    @property
    def text(self) -> str:
        return "".join(w.word for w in self.words).strip()


class AccurateSpeechToText(Protocol):
    name: str
    model_id: str

    def transcribe_words(self, audio: NDArray[np.float32], context: str) -> TimedTranscript: ...

    def warmup(self) -> None: ...


def accurate_context(question: str | None, vocabulary: Sequence[str]) -> str:
    """What the interview already knows, as a prompt: the question, then the plan's words."""
    parts = [question.strip()] if question and question.strip() else []
    if vocabulary:
        parts.append(", ".join(vocabulary) + ".")
    return " ".join(parts)


class AccurateWhisper:
    def __init__(self, model_dir: Path, beam_size: int, cpu_threads: int) -> None:
        from faster_whisper import WhisperModel

        self._model = WhisperModel(
            str(model_dir), device="cpu", compute_type="int8", cpu_threads=cpu_threads
        )
        self.name = f"whisper-{model_dir.name.removeprefix('whisper-')}"
        self.model_id = hashlib.sha256((model_dir / "model.bin").read_bytes()).hexdigest()
        self.beam_size = beam_size
        self._english_only = model_dir.name.endswith(".en")

    def transcribe_words(self, audio: NDArray[np.float32], context: str) -> TimedTranscript:
        segments, _info = self._model.transcribe(
            audio,
            language=None if self._english_only else "en",
            beam_size=self.beam_size,
            temperature=(0.0, 0.4),
            condition_on_previous_text=False,
            initial_prompt=context or None,
            word_timestamps=True,
            vad_filter=False,
        )
        words = [
            TimedWord(w.word, float(w.start), float(w.end))
            for segment in segments
            for w in segment.words or ()
        ]
        return TimedTranscript(tuple(words))

    def warmup(self) -> None:
        rng = np.random.default_rng(0)
        self.transcribe_words((rng.standard_normal(16_000) * 0.01).astype(np.float32), "")


@dataclass(frozen=True)
class AccurateSpec:
    """Picklable: how a worker process builds the engine."""

    model_dir: Path
    beam_size: int
    cpu_threads: int

    def build(self) -> AccurateSpeechToText:
        return AccurateWhisper(self.model_dir, self.beam_size, self.cpu_threads)


def accurate_spec(settings: Settings) -> AccurateSpec | None:
    if settings.accurate_stt_model == "off":
        return None
    from interview.speech.model_files import models_dir_from_env

    return AccurateSpec(
        model_dir=models_dir_from_env() / f"whisper-{settings.accurate_stt_model}",
        beam_size=settings.accurate_stt_beam_size,
        cpu_threads=1,
    )
