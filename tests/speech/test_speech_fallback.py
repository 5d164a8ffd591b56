"""The OpenAI engines behind the real local engines: every kind of remote failure is answered by
Whisper / Kokoro for that call, logged with its reason and without the key, and followed by a
cool-down that skips the remote engine until it is tried again."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from harness.fake_openai import Behaviour, Fail, FakeOpenAI, Hang, Raw, Speech, Transcript
from harness.ports import free_port
from interview.config import Settings, SpeechEngine
from interview.speech.cache import SpeechCache
from interview.speech.engines import build_engines
from interview.speech.fallback import COOLDOWN_SECONDS, FallbackSpeechToText, FallbackTextToSpeech
from interview.speech.model_files import models_dir_from_env
from interview.speech.priority_worker import PriorityWorker
from interview.speech.stt.local_whisper import LocalWhisper
from interview.speech.stt.openai_stt import OpenAISpeechToText
from interview.speech.tts import Speech as SpokenAudio
from interview.speech.tts.kokoro import KokoroTTS
from interview.speech.tts.openai_tts import OpenAITextToSpeech
from tests.speech.openai_support import (
    TIMEOUT,
    LogCapture,
    espeak_float32,
    espeak_pcm,
    settings_for,
)

ANSWER = "I would start with the logs and then check the metrics."
LINE = "Hello there."
WRONG_KEY = "sk-wrong-secret-9d2f"


class Clock:
    """time.monotonic, moved by the test: the 30 s cool-down without waiting 30 s."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Failure:
    """One way the remote engine fails, and what the warning must say about it."""

    id: str
    error: str
    status: int | None = None
    behaviour: Behaviour | None = None  # queued on the fake; None: the settings make it fail
    refused: bool = False  # point the client at a port nothing listens on
    wrong_key: bool = False  # the fake answers 401


def failures(garbage: Behaviour) -> list[Failure]:
    return [
        Failure("500", "InternalServerError", 500, Fail(500)),
        Failure("429", "RateLimitError", 429, Fail(429, retry_after=0.01)),
        Failure("timeout", "APITimeoutError", None, Hang(TIMEOUT + 2)),
        Failure("refused", "APIConnectionError", refused=True),
        Failure("garbage", "SpeechOutputError", None, garbage),
        Failure("wrong-key", "AuthenticationError", 401, wrong_key=True),
    ]


STT_FAILURES = failures(Raw(b"<html>502 Bad Gateway</html>", "text/html"))
TTS_FAILURES = failures(Raw(b'{"error": "not audio"}', "application/json"))


def failing_settings(fake: FakeOpenAI, failure: Failure) -> Settings:
    if failure.behaviour is not None:
        fake.transcriptions.append(failure.behaviour)
        fake.speech.append(failure.behaviour)
    if failure.refused:
        return settings_for(fake, openai_base_url=f"http://127.0.0.1:{free_port()}/v1")
    if failure.wrong_key:
        return settings_for(fake, openai_api_key=WRONG_KEY)
    return settings_for(fake)


def assert_logged_safely(logs: LogCapture, failure: Failure, direction: str) -> None:
    [warning] = logs.events("speech_engine_fallback")
    assert warning["level"] == "warning"
    assert (warning["direction"], warning["engine"]) == (direction, "openai")
    assert warning["error"] == failure.error
    assert warning.get("status") == failure.status
    assert warning["cooldown_seconds"] == COOLDOWN_SECONDS
    for secret in (FAKE_KEY_MARKER, WRONG_KEY, "Bearer", "authorization"):
        assert secret not in logs.text


FAKE_KEY_MARKER = "sk-test-speech-secret"  # the fake's key (openai_support.FAKE_KEY), any part


@pytest.fixture(scope="module")
def answer_audio() -> NDArray[np.float32]:
    return espeak_float32(ANSWER)


@pytest.fixture(scope="module")
def local_text(local_whisper: LocalWhisper, answer_audio: NDArray[np.float32]) -> str:
    """What the local engine hears in the answer: a fallback must return exactly this."""
    text = local_whisper.transcribe(answer_audio)
    assert text
    return text


@pytest.fixture(scope="module")
def local_line(local_kokoro: KokoroTTS) -> NDArray[np.float32]:
    return local_kokoro.synthesize(LINE, "af_heart").audio


# speech-to-text


@pytest.mark.parametrize("failure", STT_FAILURES, ids=[f.id for f in STT_FAILURES])
def test_a_failed_transcription_is_answered_by_local_whisper(
    openai_fake: FakeOpenAI,
    local_whisper: LocalWhisper,
    answer_audio: NDArray[np.float32],
    local_text: str,
    logs: LogCapture,
    failure: Failure,
) -> None:
    settings = failing_settings(openai_fake, failure)
    stt = FallbackSpeechToText(OpenAISpeechToText(settings), local_whisper)

    assert stt.transcribe(answer_audio) == local_text
    assert stt.primary_state == "cooling down"
    assert len(openai_fake.transcription_requests()) == (0 if failure.refused else 1)
    assert_logged_safely(logs, failure, "stt")


def test_transcription_cool_down_then_recovery(
    openai_fake: FakeOpenAI,
    local_whisper: LocalWhisper,
    answer_audio: NDArray[np.float32],
    local_text: str,
    logs: LogCapture,
) -> None:
    clock = Clock()
    stt = FallbackSpeechToText(
        OpenAISpeechToText(settings_for(openai_fake)), local_whisper, clock=clock
    )
    openai_fake.transcriptions.append(Transcript("from the api"), Fail(503))
    assert stt.transcribe(answer_audio) == "from the api"
    assert stt.transcribe(answer_audio) == local_text  # the 503
    assert len(openai_fake.transcription_requests()) == 2

    # Within the cool-down the remote engine is not even asked.
    clock.now += COOLDOWN_SECONDS - 1
    openai_fake.transcriptions.append(Transcript("from the api again"))
    assert stt.transcribe(answer_audio) == local_text
    assert len(openai_fake.transcription_requests()) == 2
    assert len(logs.events("speech_engine_fallback")) == 1  # one warning, not one per answer

    # After it, one call tries the remote engine again, and it answers.
    clock.now += 2
    assert stt.primary_state == "retrying"
    assert stt.transcribe(answer_audio) == "from the api again"
    assert len(openai_fake.transcription_requests()) == 3
    assert stt.primary_state == "ok"
    assert [e["direction"] for e in logs.events("speech_engine_recovered")] == ["stt"]


# text-to-speech


@pytest.mark.parametrize("failure", TTS_FAILURES, ids=[f.id for f in TTS_FAILURES])
def test_a_failed_synthesis_is_answered_by_kokoro(
    openai_fake: FakeOpenAI,
    local_kokoro: KokoroTTS,
    local_line: NDArray[np.float32],
    logs: LogCapture,
    failure: Failure,
) -> None:
    settings = failing_settings(openai_fake, failure)
    tts = FallbackTextToSpeech(OpenAITextToSpeech(settings), local_kokoro)

    speech = tts.synthesize(LINE, "af_heart")

    assert tts.sample_rate == 24_000
    np.testing.assert_allclose(speech.audio, local_line, atol=1e-4)  # Kokoro's own audio
    assert speech.cache_key == local_kokoro.cache_key != tts.cache_key  # and says so
    assert tts.primary_state == "cooling down"
    assert len(openai_fake.speech_requests()) == (0 if failure.refused else 1)
    assert_logged_safely(logs, failure, "tts")


def test_synthesis_cool_down_then_recovery(
    openai_fake: FakeOpenAI,
    local_kokoro: KokoroTTS,
    local_line: NDArray[np.float32],
    logs: LogCapture,
) -> None:
    clock = Clock()
    remote = espeak_pcm(LINE)
    tts = FallbackTextToSpeech(
        OpenAITextToSpeech(settings_for(openai_fake)), local_kokoro, clock=clock
    )
    openai_fake.speech.append(Fail(500))
    np.testing.assert_allclose(tts.synthesize(LINE, "af_heart").audio, local_line, atol=1e-4)

    clock.now += COOLDOWN_SECONDS / 2
    openai_fake.speech.append(Speech(remote))
    np.testing.assert_allclose(tts.synthesize(LINE, "af_heart").audio, local_line, atol=1e-4)
    assert len(openai_fake.speech_requests()) == 1  # skipped during the cool-down

    clock.now += COOLDOWN_SECONDS
    speech = tts.synthesize(LINE, "af_heart")
    assert speech.cache_key == tts.cache_key  # the API's own again
    np.testing.assert_array_equal(speech.audio, np.frombuffer(remote, "<i2") / np.float32(32768))
    assert len(openai_fake.speech_requests()) == 2
    assert len(logs.events("speech_engine_fallback")) == 1
    assert [e["direction"] for e in logs.events("speech_engine_recovered")] == ["tts"]


def test_engines_of_different_sample_rates_are_refused(
    openai_fake: FakeOpenAI, local_kokoro: KokoroTTS
) -> None:
    class At16kHz:  # only the rate matters: the check runs before any synthesis
        name = "at-16-khz"
        sample_rate = 16_000
        voices = frozenset({"af_heart"})
        cache_key = "at-16-khz"

        def synthesize(self, text: str, voice: str | None = None) -> SpokenAudio:
            raise AssertionError("never called")

        def warmup(self) -> None:
            raise AssertionError("never called")

    with pytest.raises(ValueError, match="16000 Hz"):
        FallbackTextToSpeech(OpenAITextToSpeech(settings_for(openai_fake)), At16kHz())
    assert FallbackTextToSpeech(OpenAITextToSpeech(settings_for(openai_fake)), local_kokoro)


# with the speech cache


@pytest.fixture
def worker() -> Iterator[PriorityWorker]:
    pool = PriorityWorker("test-speech-fallback")
    [thread] = [t for t in threading.enumerate() if t.name == "test-speech-fallback"]
    yield pool
    pool.shutdown()
    thread.join(10)


def spoken(cache: SpeechCache, text: str) -> NDArray[np.float32]:
    async def run() -> NDArray[np.float32]:
        [(_sentence, future)] = cache.sentences(text, "af_heart")
        return await asyncio.wait_for(future, 30)

    return asyncio.run(run())


def test_the_disk_cache_keeps_openai_audio_apart_and_keeps_a_stand_in_as_kokoros(
    openai_fake: FakeOpenAI,
    local_kokoro: KokoroTTS,
    local_line: NDArray[np.float32],
    worker: PriorityWorker,
    tmp_path: Path,
    logs: LogCapture,
) -> None:
    remote = espeak_pcm(LINE)
    tts = FallbackTextToSpeech(OpenAITextToSpeech(settings_for(openai_fake)), local_kokoro)

    # The API fails: Kokoro's audio plays, and is kept as Kokoro's, never under OpenAI's key.
    openai_fake.speech.append(Fail(500))
    first = SpeechCache(tts, worker, directory=tmp_path)
    np.testing.assert_allclose(spoken(first, LINE), local_line, atol=1e-4)
    assert len(list(tmp_path.glob("*.npy"))) == 1

    # After the cool-down (a fresh engine here) the API's own audio is asked for and kept...
    tts = FallbackTextToSpeech(OpenAITextToSpeech(settings_for(openai_fake)), local_kokoro)
    openai_fake.speech.append(Speech(remote))
    second = SpeechCache(tts, worker, directory=tmp_path)
    expected = np.frombuffer(remote, "<i2") / np.float32(32768)
    np.testing.assert_array_equal(spoken(second, LINE), expected)
    assert len(list(tmp_path.glob("*.npy"))) == 2

    # ...and served from disk to the next process without a request,
    third = SpeechCache(tts, worker, directory=tmp_path)
    np.testing.assert_array_equal(spoken(third, LINE), expected)
    assert len(openai_fake.speech_requests()) == 2

    # while a Kokoro-only service sharing the directory gets Kokoro's: the stand-in kept first.
    local = SpeechCache(local_kokoro, worker, directory=tmp_path)
    np.testing.assert_allclose(spoken(local, LINE), local_line, atol=1e-4)
    assert local.hits == 1 and len(list(tmp_path.glob("*.npy"))) == 2


# assembly


def test_build_engines_puts_the_local_engines_behind_the_openai_ones(
    openai_fake: FakeOpenAI,
) -> None:
    settings = settings_for(openai_fake, models_dir=models_dir_from_env(), tts_voice="am_michael")
    engines = build_engines(settings)

    assert (engines.stt.name, engines.tts.name) == ("openai, else whisper", "openai, else kokoro")
    assert isinstance(engines.stt, FallbackSpeechToText)
    assert isinstance(engines.stt.primary, OpenAISpeechToText)
    assert isinstance(engines.stt.fallback, LocalWhisper)
    assert isinstance(engines.tts, FallbackTextToSpeech)
    assert isinstance(engines.tts.primary, OpenAITextToSpeech)
    assert isinstance(engines.tts.fallback, KokoroTTS)
    assert engines.tts.fallback.default_voice == "am_michael"
    assert engines.tts.cache_key == engines.tts.primary.cache_key
    assert openai_fake.requests == []  # assembling asks the API nothing

    only_stt = build_engines(settings.model_copy(update={"tts_engine": SpeechEngine.local}))
    assert (only_stt.stt.name, only_stt.tts.name) == ("openai, else whisper", "kokoro")
    assert isinstance(only_stt.tts, KokoroTTS)
