"""Fixtures for end-to-end voice tests: a voice-enabled server and the project's own STT."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from harness.app_server import AppServer
from harness.coturn import CoturnServer
from harness.speech_audio import resample
from interview.config import PROJECT_DIR
from interview.speech.stt.local_whisper import LocalWhisper

PLANS = Path(__file__).parent / "plans"
COTURN_SECRET = "relay-test-secret-7f3a"


@pytest.fixture(scope="module")
def coturn() -> Iterator[CoturnServer]:
    """A real coturn on loopback with use-auth-secret and COTURN_SECRET."""
    server = CoturnServer(COTURN_SECRET)
    server.start()
    yield server
    server.stop()


# One speech cache for every voice server of the run: the plans' lines are synthesized once.
SPEECH_CACHE = Path(tempfile.gettempdir()) / f"spool-speech-cache-{os.getpid()}"


@pytest.fixture(scope="session", autouse=True)
def _speech_cache_removed_after_the_run() -> Iterator[None]:
    yield
    shutil.rmtree(SPEECH_CACHE, ignore_errors=True)


def voice_env(directory: Path, **extra: str) -> dict[str, str]:
    return {
        "SPEECH_CACHE_DIR": str(SPEECH_CACHE),
        "DATABASE_URL": f"sqlite:///{directory}/spool.db",
        "VOICE_ENABLED": "true",
        "PLANS_DIR": str(PLANS),
        "DEFAULT_PLAN_ID": "quick-engineer",
        **extra,
    }


def start_voice_server(directory: Path, **extra: str) -> AppServer:
    server = AppServer(directory / "server.log", voice_env(directory, **extra))
    server.start(timeout=120)  # health is 200 only once the models are loaded and warm
    return server


@pytest.fixture(scope="module")
def voice_server(tmp_path_factory) -> Iterator[AppServer]:
    server = start_voice_server(tmp_path_factory.mktemp("voice"), MAX_CONCURRENT_INTERVIEWS="2")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def transcribe() -> Callable[[int, np.ndarray], str]:
    """The project's own speech-to-text, to check what the interviewer said."""
    whisper = LocalWhisper(PROJECT_DIR / "models" / "whisper-tiny.en")

    def run(sample_rate: int, audio: np.ndarray) -> str:
        mono16k = resample(audio, sample_rate, 16_000).astype(np.float32) / 32768.0
        return whisper.transcribe(mono16k)

    return run


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("\u2019", "'"))


def recall(expected: str, heard: str) -> float:
    """Share of the expected words that were heard (order-free, each word counted once)."""
    want = words(expected)
    got = set(words(heard))
    return sum(w in got for w in want) / len(want) if want else 1.0


# --- Browser tests (Playwright on Debian's Chromium): fixtures shared by the React demo and
# Gradio UI tests; see tests/e2e/browser_fixtures.py and harness/browser.py.
from tests.e2e.browser_fixtures import (  # noqa: E402
    browser,
    browser_context_args,
    browser_type,
    browser_type_launch_args,
    chromium_launcher,
    launch_browser,
    playwright,
)

__all__ = [
    "browser",
    "browser_context_args",
    "browser_type",
    "browser_type_launch_args",
    "chromium_launcher",
    "launch_browser",
    "playwright",
]
