"""Spoken test audio in Kokoro voices (the project's own TTS model, more natural prosody than
espeak-ng), as int16 mono at 48 kHz, cached on disk next to harness.speech_audio's clips.

    audio = kokoro_speech("I fixed the build.", voice="am_michael")

Kokoro is loaded on the first clip that is not cached yet (a second or two, ~300 MB), from the
models `make models` assembled.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import TYPE_CHECKING

from harness.speech_audio import (
    SAMPLE_RATE,
    Int16Array,
    as_int16,
    cache_dir,
    load_wav,
    resample,
    save_wav,
    trim_silence,
)

if TYPE_CHECKING:
    from interview.speech.tts.kokoro import KokoroTTS

# Bump when the way clips are made changes, so stale cached files are not reused.
_CACHE_VERSION = 1


@functools.cache
def _kokoro() -> KokoroTTS:
    """One model per process, loaded on first use (imported here: onnxruntime is heavy)."""
    from interview.speech.model_files import ModelPaths, models_dir_from_env
    from interview.speech.tts.kokoro import KokoroTTS

    paths = ModelPaths(models_dir_from_env())
    return KokoroTTS(paths.kokoro_model, paths.kokoro_voices, "harness")


def kokoro_speech(text: str, *, voice: str = "am_michael") -> Int16Array:
    """`text` said by Kokoro's `voice`, trimmed of leading and trailing silence, at 48 kHz."""
    if not text.strip():
        raise ValueError("kokoro_speech() needs some text")
    key = hashlib.sha256(repr((_CACHE_VERSION, "kokoro", text, voice)).encode()).hexdigest()[:24]
    cached = cache_dir() / f"kokoro-{key}.wav"
    if cached.exists():
        return load_wav(cached)[1]
    engine = _kokoro()
    made = engine.synthesize(text, voice=voice)
    samples = trim_silence(as_int16(made.audio), engine.sample_rate)
    audio = resample(samples, engine.sample_rate, SAMPLE_RATE)
    # Written next to the target and renamed: a concurrent reader never sees half a file.
    partial = cached.with_name(f"{cached.stem}.{os.getpid()}.partial")
    save_wav(partial, audio, SAMPLE_RATE)
    os.replace(partial, cached)
    return audio
