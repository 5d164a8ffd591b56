"""Shared pieces of the OpenAI speech-engine tests: the fake server, settings pointing at it,
espeak-ng speech in the formats both sides use, and the service's own JSON log output."""

from __future__ import annotations

import io
import json
import logging
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from harness.fake_openai import FakeOpenAI
from harness.speech_audio import load_wav, speak
from interview.config import Settings
from interview.logs import configure_logging
from interview.speech.stt.base import STT_SAMPLE_RATE

FAKE_KEY = "sk-test-speech-secret-7c1e"
# Timeouts in tests are short so a hang costs about a second, not the default ten.
TIMEOUT = 1.0


def settings_for(fake: FakeOpenAI, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "openai_api_key": fake.api_key,
        "openai_base_url": fake.base_url,
        "stt_engine": "openai",
        "tts_engine": "openai",
        "openai_speech_timeout_seconds": TIMEOUT,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(api_key=FAKE_KEY)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def openai_fake(fake: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The module's fake server, emptied before and after each test."""
    fake.reset()
    yield fake
    fake.reset()


def espeak_float32(text: str, sample_rate: int = STT_SAMPLE_RATE) -> NDArray[np.float32]:
    rate, samples = load_wav(speak(text, sample_rate=sample_rate))
    assert rate == sample_rate
    return samples.astype(np.float32) / 32768.0


def espeak_pcm(text: str, sample_rate: int = 24_000) -> bytes:
    """What the speech API streams for response_format=pcm: 16-bit little-endian mono."""
    rate, samples = load_wav(speak(text, sample_rate=sample_rate))
    assert rate == sample_rate
    return samples.astype("<i2").tobytes()


def read_wav(data: bytes) -> tuple[int, int, int, NDArray[np.int16]]:
    """(rate, channels, sample width, samples) of WAV bytes; raises if they are not a WAV."""
    with wave.open(io.BytesIO(data), "rb") as wav:
        frames = wav.readframes(wav.getnframes())
        return (
            wav.getframerate(),
            wav.getnchannels(),
            wav.getsampwidth(),
            np.frombuffer(frames, dtype="<i2").copy(),
        )


@dataclass
class LogCapture:
    stream: io.StringIO

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.text.splitlines() if line.strip()]
        return [line for line in lines if name is None or line.get("event") == name]


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    """The service's real logging set-up (JSON lines, secret redaction), written to a buffer,
    so a test sees exactly what an operator would see."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("INFO")
    stream = io.StringIO()
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(stream)
    yield LogCapture(stream)
    root.handlers = saved_handlers
    root.setLevel(saved_level)
