"""Fixtures of the speech tests: the local engines from `make models`, loaded once per run."""

from __future__ import annotations

import pytest

from interview.speech.model_files import KOKORO_MODEL, ModelPaths, models_dir_from_env
from interview.speech.stt.local_whisper import LocalWhisper
from interview.speech.tts.kokoro import KokoroTTS
from tests.speech.openai_support import fake, logs, openai_fake

__all__ = ["fake", "logs", "openai_fake"]  # fixtures for the OpenAI engine tests


@pytest.fixture(scope="session")
def local_whisper() -> LocalWhisper:
    return LocalWhisper(ModelPaths(models_dir_from_env()).whisper_dir)


@pytest.fixture(scope="session")
def local_kokoro() -> KokoroTTS:
    models = ModelPaths(models_dir_from_env())
    return KokoroTTS(
        models.kokoro_model, models.kokoro_voices, KOKORO_MODEL.sha256, default_voice="af_heart"
    )
