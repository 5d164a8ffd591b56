"""OpenAITextToSpeech with the real `openai` client over real HTTP against FakeOpenAI."""

from __future__ import annotations

import time

import numpy as np
import openai
import pytest

from harness.fake_openai import Fail, FakeOpenAI, Raw, Speech
from harness.speech_audio import resample
from interview.speech.errors import SpeechOutputError
from interview.speech.fallback import FallbackTextToSpeech
from interview.speech.stt.base import STT_SAMPLE_RATE
from interview.speech.stt.local_whisper import LocalWhisper
from interview.speech.tts import Speech as SpokenAudio
from interview.speech.tts import TextToSpeech
from interview.speech.tts.kokoro import KOKORO_SAMPLE_RATE
from interview.speech.tts.openai_tts import OPENAI_VOICES, OpenAITextToSpeech
from tests.speech.openai_support import espeak_pcm, settings_for
from tests.speech.test_engines import words_recognized

SENTENCE = "Tell me about the last system you built."


def test_streamed_pcm_becomes_float32_at_24_khz(openai_fake: FakeOpenAI) -> None:
    engine: TextToSpeech = OpenAITextToSpeech(settings_for(openai_fake))
    # Half a second of a known ramp, across the whole int16 range, in 7 streamed pieces (so
    # some pieces split a sample in two).
    samples = np.linspace(-32768, 32767, 12_000).astype("<i2")
    openai_fake.speech.append(Speech(samples.tobytes(), chunks=7))

    speech = engine.synthesize(SENTENCE, "alloy")
    audio = speech.audio

    assert speech.cache_key == engine.cache_key
    assert engine.sample_rate == KOKORO_SAMPLE_RATE == 24_000  # one rate for both engines
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert audio.size == samples.size
    np.testing.assert_array_equal(audio, samples.astype(np.float32) / 32768.0)
    assert float(audio.min()) == -1.0 and float(audio.max()) < 1.0
    [request] = openai_fake.speech_requests()
    assert request.body == {
        "model": "gpt-4o-mini-tts",
        "voice": "alloy",
        "input": SENTENCE,
        "response_format": "pcm",
    }
    assert request.headers["authorization"] == f"Bearer {openai_fake.api_key}"


@pytest.mark.parametrize(
    ("asked", "sent"),
    [("af_heart", "coral"), ("am_michael", "coral"), (None, "coral"), ("nova", "nova")],
)
def test_kokoro_voice_names_are_replaced_by_the_configured_openai_voice(
    openai_fake: FakeOpenAI, asked: str | None, sent: str
) -> None:
    settings = settings_for(openai_fake, openai_tts_voice="coral", openai_tts_model="tts-x")
    openai_fake.speech.append(Speech(b"\x00\x01" * 2400))

    OpenAITextToSpeech(settings).synthesize("Hello there.", asked)

    body = openai_fake.speech_requests()[0].body
    assert (body["voice"], body["model"]) == (sent, "tts-x")


def test_sessions_choose_among_the_local_voices_behind_openai(openai_fake: FakeOpenAI) -> None:
    class LocalVoices:  # the local engine's voice list is all that is asked of it here
        name = "local"
        sample_rate = KOKORO_SAMPLE_RATE
        voices = frozenset({"af_heart", "bf_emma"})
        cache_key = "local"

        def synthesize(self, text: str, voice: str | None = None) -> SpokenAudio:
            raise AssertionError("never called")

        def warmup(self) -> None:
            raise AssertionError("never called")

    remote = OpenAITextToSpeech(settings_for(openai_fake))
    assert remote.voices == OPENAI_VOICES  # the names it passes on to the speech API
    # A session names a Kokoro voice: the fallback speaks it, OpenAI its configured voice.
    engine: TextToSpeech = FallbackTextToSpeech(remote, LocalVoices())
    assert engine.voices == {"af_heart", "bf_emma"}
    assert openai_fake.speech_requests() == []


def test_streamed_speech_is_intelligible(
    openai_fake: FakeOpenAI, local_whisper: LocalWhisper
) -> None:
    # The fake speaks with espeak-ng, as the real API would speak with its model.
    openai_fake.speech.default = lambda body: Speech(espeak_pcm(body["input"]), chunks=16)

    audio = OpenAITextToSpeech(settings_for(openai_fake)).synthesize(SENTENCE).audio

    assert 1.0 < audio.size / 24_000 < 6.0
    as16k = resample(np.round(audio * 32768).astype(np.int16), 24_000, STT_SAMPLE_RATE)
    heard = local_whisper.transcribe(as16k.astype(np.float32) / 32768.0)
    assert words_recognized(SENTENCE, heard) >= 0.8, heard


@pytest.mark.parametrize(
    "answer",
    [
        Raw(b'{"error": {"message": "overloaded"}}', "application/json"),
        Raw(b"<html>502 Bad Gateway</html>", "text/html"),
        Speech(b"\x01\x02\x03"),  # an odd byte count is not 16-bit PCM
        Speech(b""),  # no audio at all
        Speech(b"\x00\x00" * 100),  # a cut-off answer: 4 ms of audio for a whole sentence
    ],
    ids=["json-body", "html-page", "odd-bytes", "empty", "cut-off"],
)
def test_an_answer_that_is_not_pcm_speech_is_an_error(
    openai_fake: FakeOpenAI, answer: Raw | Speech
) -> None:
    openai_fake.speech.append(answer)
    with pytest.raises(SpeechOutputError):
        OpenAITextToSpeech(settings_for(openai_fake)).synthesize(SENTENCE)


def test_a_trickling_stream_is_cut_at_the_overall_timeout(openai_fake: FakeOpenAI) -> None:
    # Each piece arrives well within the read timeout, but all of them take ~2.5 s.
    openai_fake.speech.append(Speech(b"\x00\x01" * 24_000, chunks=10, delay=0.25))
    engine = OpenAITextToSpeech(settings_for(openai_fake))  # 1 s timeout
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        engine.synthesize(SENTENCE)
    assert time.monotonic() - started < 2.0


def test_a_rate_limit_raises_after_one_attempt(openai_fake: FakeOpenAI) -> None:
    openai_fake.speech.append(Fail(429, retry_after=0.01), Speech(b"\x00\x01" * 2400))
    with pytest.raises(openai.RateLimitError):
        OpenAITextToSpeech(settings_for(openai_fake)).synthesize(SENTENCE)
    assert len(openai_fake.speech_requests()) == 1


def test_blank_text_is_not_sent(openai_fake: FakeOpenAI) -> None:
    audio = OpenAITextToSpeech(settings_for(openai_fake)).synthesize("  ").audio
    assert audio.size == 0 and audio.dtype == np.float32
    assert openai_fake.requests == []


def test_warmup_sends_nothing(openai_fake: FakeOpenAI) -> None:
    OpenAITextToSpeech(settings_for(openai_fake)).warmup()
    assert openai_fake.requests == []


def test_the_cache_identity_names_server_model_and_voice_but_not_the_key(
    openai_fake: FakeOpenAI,
) -> None:
    engine = OpenAITextToSpeech(settings_for(openai_fake, openai_tts_voice="sage"))
    assert engine.cache_key == f"openai|{openai_fake.base_url}|gpt-4o-mini-tts|sage"
    assert openai_fake.api_key not in engine.cache_key
