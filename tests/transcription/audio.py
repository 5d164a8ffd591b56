"""Real answers for the pass runner's tests: espeak-ng speech at 16 kHz, and the model's spec."""

from __future__ import annotations

import os
import re

import numpy as np

from harness.speech_audio import load_wav, silence, speak
from interview.speech.model_files import models_dir_from_env
from interview.speech.stt.accurate import AccurateSpec

RATE = 16_000


def tiny_spec() -> AccurateSpec:
    """The smallest real engine: Whisper tiny.en from `make models`, one thread."""
    return AccurateSpec(
        model_dir=models_dir_from_env() / "whisper-tiny.en", beam_size=1, cpu_threads=1
    )


def spoken(text: str, *, lead_seconds: float = 0.0) -> bytes:
    """`text` spoken by espeak-ng, after `lead_seconds` of silence: 16-bit LE PCM at 16 kHz."""
    _rate, samples = load_wav(speak(text, sample_rate=RATE))
    audio = np.concatenate([silence(lead_seconds, RATE), samples]).astype("<i2")
    return audio.tobytes()


def long_noise(seconds: float) -> bytes:
    """Speech-like noise long enough that no pass over it ends within a tiny timeout."""
    rng = np.random.default_rng(int(seconds))
    return (rng.standard_normal(int(seconds * RATE)) * 3000).astype("<i2").tobytes()


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def scheduling_policies(pid: int) -> set[int]:
    """The scheduling policy (field 41 of /proc/<pid>/task/<tid>/stat) of every thread."""
    policies = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as stat:
            # The command name (field 2) may hold spaces: count fields after its ")".
            fields = stat.read().rsplit(")", 1)[1].split()
        policies.add(int(fields[41 - 3]))
    return policies
