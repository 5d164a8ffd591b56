"""LocalWhisper's short window against the real tiny.en model: same words as the 30 s pass,
a fallback to that pass when the short decode is not trusted, and long audio never shortened."""

from __future__ import annotations

import re

import ctranslate2
import numpy as np
import pytest
from numpy.typing import NDArray

from interview.speech.stt import local_whisper as module
from interview.speech.stt.base import STT_SAMPLE_RATE
from interview.speech.stt.local_whisper import LocalWhisper
from tests.speech.openai_support import espeak_float32

PHRASE = "My sister planted seven apple trees behind the old garden wall."
KEY_WORDS = {"sister", "planted", "apple", "trees", "garden", "wall"}


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


@pytest.fixture(scope="module")
def phrase_audio() -> NDArray[np.float32]:
    return espeak_float32(PHRASE)


def test_the_public_api_the_short_window_needs_is_there(local_whisper: LocalWhisper) -> None:
    # faster-whisper and CTranslate2 upgrades: the short window relies on these, nothing else.
    model = local_whisper._model
    features = model.feature_extractor(np.zeros(STT_SAMPLE_RATE, dtype=np.float32))
    assert features.shape[0] == model.feature_extractor.mel_filters.shape[0]
    assert abs(features.shape[1] - 100) <= 1  # 10 ms frames
    encoded = np.asarray(model.model.encode(ctranslate2.StorageView.from_array(features[None])))
    assert encoded.shape[:2] == (1, (features.shape[1] + 1) // 2)  # any length, not only 30 s
    assert callable(model.model.generate)
    assert model.hf_tokenizer.token_to_id("<|notimestamps|>") is not None


def test_the_short_window_hears_the_same_words_without_falling_back(
    local_whisper: LocalWhisper, phrase_audio: NDArray[np.float32]
) -> None:
    short = local_whisper.transcribe_short(phrase_audio)
    full = local_whisper.transcribe_full(phrase_audio)
    assert short is not None, "the guards rejected a clean decode"
    assert words(full) >= KEY_WORDS
    assert words(short) >= KEY_WORDS
    calls, fallbacks = local_whisper.short_calls, local_whisper.fallbacks
    assert local_whisper.transcribe(phrase_audio) == short
    assert (local_whisper.short_calls, local_whisper.fallbacks) == (calls + 1, fallbacks)


def test_a_decode_that_runs_out_of_tokens_falls_back_to_the_30_s_pass(
    local_whisper: LocalWhisper,
    phrase_audio: NDArray[np.float32],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A budget far below the phrase's tokens: what a repetition loop looks like to the guard.
    monkeypatch.setattr(module, "MIN_TOKENS", 2)
    monkeypatch.setattr(module, "MAX_TOKENS_PER_SECOND", 0.5)
    assert local_whisper.transcribe_short(phrase_audio) is None
    fallbacks = local_whisper.fallbacks
    text = local_whisper.transcribe(phrase_audio)
    assert local_whisper.fallbacks == fallbacks + 1
    assert text == local_whisper.transcribe_full(phrase_audio)
    assert words(text) >= KEY_WORDS


def test_a_repetition_loop_is_recognised() -> None:
    looped = "And we moved the jobs on to a queue because. And we moved the jobs on to a queue"
    assert module._repeats(looped)
    assert not module._repeats("We moved the jobs onto a queue because the API was slow.")
    assert not module._repeats("Yes.")


def test_silence_gives_no_words_from_either_path(local_whisper: LocalWhisper) -> None:
    quiet = np.zeros(2 * STT_SAMPLE_RATE, dtype=np.float32)
    assert local_whisper.transcribe_short(quiet) == ""
    assert local_whisper.transcribe(quiet) == ""


def test_audio_longer_than_the_limit_takes_the_30_s_pass(
    local_whisper: LocalWhisper, phrase_audio: NDArray[np.float32]
) -> None:
    gap = np.zeros(int(module.SHORT_WINDOW_LIMIT * STT_SAMPLE_RATE), dtype=np.float32)
    long_audio = np.concatenate([phrase_audio, gap, phrase_audio])
    calls = local_whisper.short_calls
    text = local_whisper.transcribe(long_audio)
    assert local_whisper.short_calls == calls
    assert words(text) >= KEY_WORDS


def test_the_short_window_can_be_turned_off(
    local_whisper: LocalWhisper, phrase_audio: NDArray[np.float32]
) -> None:
    local_whisper.short_window = False
    try:
        calls = local_whisper.short_calls
        assert local_whisper.transcribe(phrase_audio) == local_whisper.transcribe_full(phrase_audio)
        assert local_whisper.short_calls == calls
    finally:
        local_whisper.short_window = True


class CountingModel:
    """The CTranslate2 model, with its decodes counted."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.decodes = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def generate(self, *args: object, **kwargs: object) -> object:
        self.decodes += 1
        return self.inner.generate(*args, **kwargs)  # type: ignore[attr-defined]


def test_an_unclear_answer_costs_one_decode_not_whisper_s_six(
    local_whisper: LocalWhisper, phrase_audio: NDArray[np.float32], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Speech played backwards: words Whisper cannot trust. faster-whisper's default fallback
    # decodes it again at each of its six temperatures (one answer once took 13 s that way,
    # with everyone else queued behind it); the live pass decodes it once.
    unclear = phrase_audio[::-1].copy()
    counting = CountingModel(local_whisper._model.model)
    monkeypatch.setattr(local_whisper._model, "model", counting)
    segments, _info = local_whisper._model.transcribe(
        unclear, beam_size=1, condition_on_previous_text=False, without_timestamps=True
    )
    list(segments)
    assert counting.decodes > 2, "the clip no longer triggers the fallback: pick another"
    counting.decodes = 0
    local_whisper.transcribe_full(unclear)
    assert counting.decodes == 1
    counting.decodes = 0
    local_whisper.transcribe(unclear)  # the short window, and the 30 s pass if it is refused
    assert counting.decodes <= 2
