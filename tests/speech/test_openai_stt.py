"""OpenAISpeechToText with the real `openai` client over real HTTP against FakeOpenAI."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from harness.fake_openai import Fail, FakeOpenAI, Raw, Transcript
from interview.speech.errors import SpeechOutputError
from interview.speech.stt import SpeechToText
from interview.speech.stt.base import STT_SAMPLE_RATE
from interview.speech.stt.local_whisper import LocalWhisper
from interview.speech.stt.openai_stt import OpenAISpeechToText, wav_bytes
from tests.speech.openai_support import espeak_float32, read_wav, settings_for
from tests.speech.test_engines import words_recognized

ANSWER = "I built a billing service and kept it reliable with tests."


def test_the_answer_is_sent_as_a_16_khz_mono_wav_and_its_text_comes_back(
    openai_fake: FakeOpenAI,
) -> None:
    engine: SpeechToText = OpenAISpeechToText(settings_for(openai_fake))
    audio = espeak_float32(ANSWER)
    openai_fake.transcriptions.append(Transcript(f"  {ANSWER}\n"))

    assert engine.transcribe(audio) == ANSWER  # trimmed like the local engine's text

    [request] = openai_fake.transcription_requests()
    assert request.body["model"] == "gpt-transcribe"
    assert request.body["language"] == "en"
    assert request.body["response_format"] == "json"
    assert request.body["file_name"] == "answer.wav"
    assert request.body["file_content_type"] == "audio/wav"
    assert request.headers["authorization"] == f"Bearer {openai_fake.api_key}"
    rate, channels, width, samples = read_wav(request.files["file"])
    assert (rate, channels, width) == (STT_SAMPLE_RATE, 1, 2)
    assert samples.size == audio.size  # every sample, nothing resampled or cut
    np.testing.assert_allclose(samples / 32767.0, audio, atol=1 / 16384)


def test_the_uploaded_wav_is_speech_a_real_recognizer_understands(
    openai_fake: FakeOpenAI, local_whisper: LocalWhisper
) -> None:
    # The fake "transcribes" with the project's local Whisper: what it hears is what we sent.
    def recognize(body: dict) -> Transcript:
        _rate, _channels, _width, samples = read_wav(body["audio"])
        return Transcript(local_whisper.transcribe(samples.astype(np.float32) / 32768.0))

    openai_fake.transcriptions.default = recognize
    # A CPU recognizer behind the fake takes longer than the tests' one-second timeout.
    settings = settings_for(openai_fake, openai_speech_timeout_seconds=60)
    text = OpenAISpeechToText(settings).transcribe(espeak_float32(ANSWER))

    assert words_recognized(ANSWER, text) >= 0.8, text


def test_the_configured_model_is_used(openai_fake: FakeOpenAI) -> None:
    settings = settings_for(openai_fake, openai_stt_model="gpt-transcribe")
    openai_fake.transcriptions.append(Transcript("yes"))

    assert OpenAISpeechToText(settings).transcribe(espeak_float32("Yes.")) == "yes"
    assert openai_fake.transcription_requests()[0].body["model"] == "gpt-transcribe"


def test_loud_input_is_clipped_not_wrapped() -> None:
    rate, _channels, _width, samples = read_wav(
        wav_bytes(np.array([2.0, -2.0, 0.5], dtype=np.float32))
    )
    assert rate == STT_SAMPLE_RATE
    assert samples.tolist() == [32767, -32767, 16384]


def test_a_server_error_raises_after_one_attempt(openai_fake: FakeOpenAI) -> None:
    # The SDK's retries are off: the fallback, not a second wait, follows a failure.
    openai_fake.transcriptions.append(Fail(500), Transcript("should not be reached"))
    with pytest.raises(openai.InternalServerError):
        OpenAISpeechToText(settings_for(openai_fake)).transcribe(espeak_float32("Yes."))
    assert len(openai_fake.transcription_requests()) == 1


@pytest.mark.parametrize(
    "body",
    [
        Raw(b"<html><body>502 Bad Gateway</body></html>", "text/html"),
        Raw(b'{"transcript": "wrong field"}', "application/json"),
        Raw(b'{"text": 42}', "application/json"),
    ],
    ids=["html-page", "json-without-text", "text-not-a-string"],
)
def test_an_answer_without_text_is_an_error_not_a_transcript(
    openai_fake: FakeOpenAI, body: Raw
) -> None:
    openai_fake.transcriptions.append(body)
    with pytest.raises(SpeechOutputError):
        OpenAISpeechToText(settings_for(openai_fake)).transcribe(espeak_float32("Yes."))


def test_silence_of_zero_length_is_not_sent(openai_fake: FakeOpenAI) -> None:
    engine = OpenAISpeechToText(settings_for(openai_fake))
    assert engine.transcribe(np.zeros(0, dtype=np.float32)) == ""
    assert openai_fake.requests == []


def test_warmup_sends_nothing(openai_fake: FakeOpenAI) -> None:
    OpenAISpeechToText(settings_for(openai_fake)).warmup()
    assert openai_fake.requests == []
