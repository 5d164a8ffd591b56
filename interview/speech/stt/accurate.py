"""The accurate pass's engine: a finished answer's words, with their times, from a bigger Whisper.

The live pass (LocalWhisper, tiny.en) is chosen for speed; this one runs in the background, where
seconds matter less than words. It is told what the interview already knows (the question just
asked and the plan's vocabulary) as Whisper's prompt, and keeps word timings so a report's quote
can point at the second it was said. The model and the use of the context were chosen by
measurement (benchmarks/transcript_accuracy.py, benchmarks/README.md).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from interview.config import Settings

# Whisper's temperature fallback, bounded: one greedy/beam decode and at most one sampled retry
# per 30 s window. The default six steps once turned one unclear answer into 10x its time.
TEMPERATURES = (0.0, 0.4)
# Whisper reads at most 223 prompt tokens; the question and ~40 terms fit well under that.
MAX_CONTEXT_CHARS = 600
# How the context reaches Whisper: all of it as initial_prompt, all as hotwords, the question as
# initial_prompt and the terms as hotwords ("split"), or not at all.
# Silence after the last sound is cut to this much before decoding: Whisper invents words in
# trailing silence ("Thank you very much.", a loop), and more of it made that worse (measured on
# TUNE). Silence before the first sound is cut to LEADING_SILENCE: Whisper starts the first word
# at 0 whatever the silence before it. Word times are given back relative to the audio given.
TRAILING_SILENCE = 0.3
LEADING_SILENCE = 0.1
FRAME = 320  # 20 ms at 16 kHz
# A frame is sound when it is within 30 dB of the loudest frame and above a digital floor.
SOUND_BELOW_PEAK = 10 ** (-30 / 20)
SOUND_FLOOR = 60 / 32768
# Silence this long inside a word's span is a pause, not the word: its time moves to the sound.
MIN_SNAP_SECONDS = 0.2
ContextUse = Literal["prompt", "hotwords", "split", "none"]
TERMS = " Terms: "
# Fast speech is ~4 tokens a second; a decode running far past that is a loop.
TOKENS_PER_SECOND = 6.0
MIN_NEW_TOKENS = 24
MAX_NEW_TOKENS = 200  # with a prompt of up to 223 tokens, under Whisper's 448
COMPRESSION_RATIO_LIMIT = 2.4  # faster-whisper's own: a text this repetitive is a loop
# Measured best on TUNE (benchmarks/README.md, "Transcript accuracy").
DEFAULT_CONTEXT_USE: ContextUse = "split"


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
    name: str  # e.g. "whisper-base"
    model_id: str  # sha256 of its model.bin (identity, for logs and the report)

    def transcribe_words(self, audio: NDArray[np.float32], context: str) -> TimedTranscript:
        """Words of 16 kHz mono float32 audio; blocking (a worker process calls it)."""
        ...

    def warmup(self) -> None: ...


def accurate_context(question: str | None, vocabulary: Sequence[str]) -> str:
    """The prompt for one answer: the question asked, then the plan's terms (never the
    candidate's words, so a misheard answer cannot reinforce itself)."""
    parts: list[str] = []
    if question and question.strip():
        parts.append(" ".join(question.split()))
    terms = [" ".join(t.split()) for t in vocabulary if t.strip()]
    if terms:
        parts.append(TERMS.strip() + " " + ", ".join(terms) + ".")
    return " ".join(parts)[:MAX_CONTEXT_CHARS]


def _split_context(context: str) -> tuple[str, str]:
    """(the question, the terms) of a context made by accurate_context."""
    if context.startswith(TERMS.strip()):
        return "", context.removeprefix(TERMS.strip()).strip()
    question, _, terms = context.partition(TERMS)
    return question.strip(), terms.strip()


class WhisperAccurate:
    """faster-whisper (CTranslate2, int8) with beam search, word timings and a bounded fallback."""

    def __init__(
        self,
        model_dir: Path,
        beam_size: int = 5,
        cpu_threads: int = 2,
        context_use: ContextUse = DEFAULT_CONTEXT_USE,
        trailing_silence: float | None = TRAILING_SILENCE,
    ) -> None:
        import ctranslate2
        from faster_whisper import WhisperModel  # heavy: only where the engine is built

        # The one sampled retry (temperature 0.4) gives the same words for the same audio on
        # every run: results and reports can be reproduced.
        ctranslate2.set_random_seed(0)
        # A local folder: faster-whisper never looks at a model hub for it.
        self.model = WhisperModel(
            str(model_dir), device="cpu", compute_type="int8", cpu_threads=cpu_threads
        )
        self.name = model_dir.name
        with (model_dir / "model.bin").open("rb") as stream:
            self.model_id = hashlib.file_digest(stream, "sha256").hexdigest()
        self.beam_size = beam_size
        self.context_use = context_use
        self.trailing_silence = trailing_silence
        self._language = None if model_dir.name.endswith(".en") else "en"

    def transcribe_words(self, audio: NDArray[np.float32], context: str) -> TimedTranscript:
        context = context.strip()
        question, terms = _split_context(context)
        prompt = {"prompt": context, "split": question}.get(self.context_use)
        hotwords = {"hotwords": context, "split": terms}.get(self.context_use)
        audio = audio.astype(np.float32, copy=False)
        shift = 0.0
        if self.trailing_silence is not None:
            start, end = sound_bounds(audio, LEADING_SILENCE, self.trailing_silence)
            audio, shift = audio[start:end], start / 16_000
            if not len(audio):  # Whisper would hear "You" in silence
                return TimedTranscript(())
        seconds = len(audio) / 16_000
        segments, _info = self.model.transcribe(
            audio,
            language=self._language,
            beam_size=self.beam_size,
            temperature=TEMPERATURES,
            # Each answer stands alone; carrying text over invites repeated hallucinations.
            condition_on_previous_text=False,
            word_timestamps=True,
            vad_filter=False,  # the voice pipeline already cut the answer out
            initial_prompt=prompt or None,
            hotwords=hotwords or None,
            # A bounded decode: a loop ("I'm sorry, I'm sorry, ...") stops at the budget.
            max_new_tokens=min(
                MAX_NEW_TOKENS,
                max(MIN_NEW_TOKENS, math.ceil(min(seconds, 30.0) * TOKENS_PER_SECOND)),
            ),
        )
        # Nothing is said after the last sound: a word that starts there was made up (Whisper goes
        # on in the silence after an answer: "And, you know, ... it's a text, it's a text").
        last_sound = seconds - (self.trailing_silence or 0.0)
        loud = loud_frames(audio)
        words = []
        for segment in segments:
            # A window that failed even its retry as a loop is not the answer's words.
            if segment.compression_ratio > COMPRESSION_RATIO_LIMIT:
                continue
            for w in segment.words or ():
                if w.start >= last_sound:
                    continue
                begins, ends = snap_to_sound(loud, float(w.start), float(w.end))
                words.append(TimedWord(w.word, round(begins + shift, 3), round(ends + shift, 3)))
        return TimedTranscript(tuple(words))

    def warmup(self) -> None:
        rng = np.random.default_rng(0)
        noise = (rng.standard_normal(16_000) * 0.01).astype(np.float32)
        self.transcribe_words(noise, "")


def loud_frames(audio: NDArray[np.float32]) -> NDArray[np.bool_]:
    """Which 20 ms frames hold sound (louder than digital silence and within 30 dB of the
    peak)."""
    frames = len(audio) // FRAME
    if not frames:
        return np.zeros(0, dtype=bool)
    rms = np.sqrt(np.mean(audio[: frames * FRAME].reshape(frames, FRAME) ** 2, axis=1))
    return np.asarray(rms >= max(SOUND_FLOOR, float(rms.max()) * SOUND_BELOW_PEAK))


def snap_to_sound(loud: NDArray[np.bool_], start: float, end: float) -> tuple[float, float]:
    """A word's (start, end) without the silence Whisper's alignment gives it: the word after
    a thinking pause starts after the pause (the last quiet stretch of MIN_SNAP_SECONDS in its
    span, even when the previous word's tail is in front of it), and ends at its last sound. A
    word with no sound at all in its span keeps its times."""
    per_second = 16_000 / FRAME
    first, last = int(start * per_second), math.ceil(end * per_second)
    span = loud[first:last]
    heard = np.flatnonzero(span)
    if not len(heard):
        return start, end
    shortest = math.ceil(MIN_SNAP_SECONDS * per_second)
    quiet_run, after_pause = 0, None
    for i, sound in enumerate(span[: heard[-1] + 1]):
        if sound:
            if quiet_run >= shortest:
                after_pause = i
            quiet_run = 0
        else:
            quiet_run += 1
    if after_pause is not None:
        start = (first + after_pause) / per_second
    sound_end = (first + int(heard[-1]) + 1) / per_second
    if end - sound_end >= MIN_SNAP_SECONDS:
        end = sound_end
    return float(start), float(end)


def sound_bounds(audio: NDArray[np.float32], before: float, after: float) -> tuple[int, int]:
    """(start, end) samples: `before` seconds ahead of the first frame of sound to `after`
    seconds past the last; (0, 0) when nothing is louder than digital silence."""
    frames = len(audio) // FRAME
    if not frames:
        return 0, 0
    rms = np.sqrt(np.mean(audio[: frames * FRAME].reshape(frames, FRAME) ** 2, axis=1))
    loud = np.flatnonzero(rms >= max(SOUND_FLOOR, float(rms.max()) * SOUND_BELOW_PEAK))
    if not len(loud):
        return 0, 0
    start = max(0, int(loud[0]) * FRAME - round(before * 16_000))
    return start, min(len(audio), (int(loud[-1]) + 1) * FRAME + round(after * 16_000))


@dataclass(frozen=True)
class AccurateSpec:
    """How a worker process builds the engine (picklable: plain values only)."""

    model_dir: Path
    beam_size: int
    cpu_threads: int
    context_use: ContextUse = DEFAULT_CONTEXT_USE

    def build(self) -> AccurateSpeechToText:
        return WhisperAccurate(self.model_dir, self.beam_size, self.cpu_threads, self.context_use)


def accurate_spec(settings: Settings) -> AccurateSpec | None:
    """The engine the settings ask for, or None when the accurate pass is off."""
    if settings.accurate_stt_model == "off":
        return None
    return AccurateSpec(
        model_dir=settings.models_dir / f"whisper-{settings.accurate_stt_model}",
        beam_size=settings.accurate_stt_beam_size,
        # Half the cores: on two hyperthreads of one core, a pass on both slowed every reply
        # (benchmarks/README.md, "The accurate pass"); it also stands still while one is made.
        cpu_threads=max(1, (os.cpu_count() or 1) // 2),
    )
