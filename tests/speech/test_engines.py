"""The real speech engines: Kokoro text-to-speech and local Whisper (tiny.en) speech-to-text.

Each model is loaded once per test session and each sentence synthesized once: on two shared
cores Kokoro takes seconds per sentence, so the set is kept to a handful of short sentences.
"""

from __future__ import annotations

import difflib
import re

import numpy as np
import pytest
from numpy.typing import NDArray

from harness.speech_audio import as_int16, load_wav, resample, speak
from interview.speech.model_files import KOKORO_MODEL, ModelPaths, models_dir_from_env
from interview.speech.stt.base import STT_SAMPLE_RATE
from interview.speech.stt.local_whisper import LocalWhisper
from interview.speech.tts.kokoro import KOKORO_SAMPLE_RATE, KokoroTTS

SENTENCE = "Tell me about the last system you built."
SHORT = "Hello there."
DEFAULT_VOICE = "af_heart"
OTHER_VOICE = "am_michael"


@pytest.fixture(scope="session")
def models() -> ModelPaths:
    return ModelPaths(models_dir_from_env())


@pytest.fixture(scope="session")
def kokoro(models: ModelPaths) -> KokoroTTS:
    return KokoroTTS(
        models.kokoro_model, models.kokoro_voices, KOKORO_MODEL.sha256, default_voice=DEFAULT_VOICE
    )


@pytest.fixture(scope="session")
def whisper(models: ModelPaths) -> LocalWhisper:
    return LocalWhisper(models.whisper_dir)


@pytest.fixture(scope="session")
def spoken_sentence(kokoro: KokoroTTS) -> NDArray[np.float32]:
    return kokoro.synthesize(SENTENCE).audio


@pytest.fixture(scope="session")
def short_default(kokoro: KokoroTTS) -> NDArray[np.float32]:
    return kokoro.synthesize(SHORT, DEFAULT_VOICE).audio


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def words_recognized(reference: str, heard: str) -> float:
    """Share of the reference words found in the transcript, in order."""
    expected = words(reference)
    matcher = difflib.SequenceMatcher(a=expected, b=words(heard), autojunk=False)
    return sum(block.size for block in matcher.get_matching_blocks()) / len(expected)


def test_word_matching_is_strict_enough_to_fail() -> None:
    assert words_recognized(SENTENCE, "Tell me about the last system you built!") == 1.0
    assert words_recognized(SENTENCE, "tell me about the lost system you build") == 0.75
    assert words_recognized(SENTENCE, "built you system last the about me tell") < 0.8
    assert words_recognized(SENTENCE, "") == 0.0


def test_kokoro_speaks_a_sentence_as_float32_at_24_khz(
    kokoro: KokoroTTS, spoken_sentence: NDArray[np.float32]
) -> None:
    assert kokoro.sample_rate == KOKORO_SAMPLE_RATE == 24_000
    audio = spoken_sentence
    assert isinstance(audio, np.ndarray)
    assert audio.dtype == np.float32
    assert audio.ndim == 1
    assert np.all(np.isfinite(audio))
    seconds = len(audio) / kokoro.sample_rate
    assert 1.0 <= seconds <= 6.0  # eight words, spoken at speed 1.0
    assert float(np.sqrt(np.mean(np.square(audio)))) > 0.01  # not silent
    assert float(np.max(np.abs(audio))) <= 1.0


def test_kokoro_falls_back_to_the_default_voice_for_an_unknown_one(
    kokoro: KokoroTTS, short_default: NDArray[np.float32]
) -> None:
    assert "zz_nobody" not in kokoro.voices
    unknown = kokoro.synthesize(SHORT, "zz_nobody").audio
    np.testing.assert_allclose(unknown, short_default, atol=1e-4)


def test_kokoro_voices_differ(kokoro: KokoroTTS, short_default: NDArray[np.float32]) -> None:
    # Without this, the fallback test above could pass with an engine that ignores voices.
    assert {DEFAULT_VOICE, OTHER_VOICE} <= kokoro.voices
    other = kokoro.synthesize(SHORT, OTHER_VOICE).audio
    assert other.shape != short_default.shape or not np.allclose(other, short_default, atol=1e-3)


def test_kokoro_refuses_an_unknown_default_voice(models: ModelPaths) -> None:
    with pytest.raises(ValueError, match="zz_nobody"):
        KokoroTTS(models.kokoro_model, models.kokoro_voices, "sha", default_voice="zz_nobody")


def test_whisper_transcribes_kokoro_speech(
    whisper: LocalWhisper, spoken_sentence: NDArray[np.float32]
) -> None:
    audio16k = resample(as_int16(spoken_sentence), KOKORO_SAMPLE_RATE, STT_SAMPLE_RATE)
    text = whisper.transcribe(audio16k.astype(np.float32) / 32768.0)

    assert isinstance(text, str)
    assert text == text.strip()
    assert words_recognized(SENTENCE, text) >= 0.8, text


def test_whisper_transcribes_espeak_speech(whisper: LocalWhisper) -> None:
    rate, samples = load_wav(speak(SENTENCE, sample_rate=STT_SAMPLE_RATE))
    assert rate == STT_SAMPLE_RATE
    text = whisper.transcribe(samples.astype(np.float32) / 32768.0)

    assert words_recognized(SENTENCE, text) >= 0.8, text
