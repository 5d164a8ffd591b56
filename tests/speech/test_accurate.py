"""The accurate pass's engine on the real Whisper model: words, their times, context, fallback.

Speech is espeak-ng's, through the Opus round trip a browser's microphone track takes; the
phrases are the tests' own (never the benchmark's answers).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from benchmarks.eot_audio import OPUS_RATE, opus_round_trip, to_16k
from harness.speech_audio import join, speech, trim_silence
from interview.config import Settings
from interview.plans import PlanCatalog
from interview.speech.model_files import ModelPaths, models_dir_from_env
from interview.speech.stt import accurate
from interview.speech.stt.accurate import (
    TEMPERATURES,
    AccurateSpec,
    TimedTranscript,
    TimedWord,
    WhisperAccurate,
    accurate_context,
    accurate_spec,
)
from interview.speech.vad import to_float32

PLANS = Path(__file__).resolve().parents[2] / "interview" / "plans"
RATE = 16_000


class CountingModel:
    """The CTranslate2 Whisper model, with each decode's sampling temperature written down."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.temperatures: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        self.temperatures.append(kwargs.get("sampling_temperature") or 0.0)
        return self.real.generate(*args, **kwargs)


@pytest.fixture(scope="module")
def engine() -> WhisperAccurate:
    paths = ModelPaths(models_dir_from_env())
    assert paths.accurate_dir is not None
    return WhisperAccurate(paths.accurate_dir)


@pytest.fixture
def counting(engine: WhisperAccurate) -> Iterator[CountingModel]:
    real = engine.model.model
    proxy = CountingModel(real)
    engine.model.model = proxy
    yield proxy
    engine.model.model = real


def spoken(*parts: str | float, voice: str = "en-us") -> NDArray[np.float32]:
    """Phrases (trimmed) and pauses (seconds), at 16 kHz after an Opus round trip."""
    pieces = [
        p if isinstance(p, float) else trim_silence(speech(p, voice=voice), OPUS_RATE)
        for p in parts
    ]
    return to_float32(to_16k(opus_round_trip(join(*pieces, sample_rate=OPUS_RATE))))


def words_of(text: str) -> list[str]:
    return [w.strip(".,!?").lower() for w in text.split()]


def test_words_carry_times_that_match_the_audio(engine: WhisperAccurate) -> None:
    first = trim_silence(speech("I started by reading the slow query log."), OPUS_RATE)
    pause = 1.5
    audio = spoken(
        0.5, "I started by reading the slow query log.", pause, "Finally I added an index."
    )
    offset = 0.5 + len(first) / OPUS_RATE + pause  # where "Finally" begins

    result = engine.transcribe_words(audio, "")

    assert words_of(result.text)[-5:] == ["finally", "i", "added", "an", "index"]
    assert result.text == "".join(w.word for w in result.words).strip()
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start <= w.end <= len(audio) / RATE + 0.05 for w in result.words)
    finally_ = next(w for w in result.words if w.word.strip(" ,").lower() == "finally")
    assert finally_.start == pytest.approx(offset, abs=0.3)
    assert result.words[0].start == pytest.approx(0.5, abs=0.3)


def test_the_plan_vocabulary_helps_a_term(engine: WhisperAccurate) -> None:
    plan = PlanCatalog.load(PLANS).get("backend-engineer-screen")
    context = accurate_context(plan.questions[0].text, plan.vocabulary)
    audio = spoken("The queue was RabbitMQ until we moved the events to Kafka.")

    without = engine.transcribe_words(audio, "").text
    with_context = engine.transcribe_words(audio, context).text

    assert "rabbitmq" not in words_of(without)
    assert "rabbitmq" in words_of(with_context)


def decodes_per_window(temperatures: list[float]) -> list[int]:
    """How many decodes each window took: a window's first decode is at temperature 0."""
    runs: list[int] = []
    for temperature in temperatures:
        if temperature == 0.0 or not runs:
            runs.append(0)
        runs[-1] += 1
    return runs


def test_the_temperature_fallback_is_bounded(
    engine: WhisperAccurate, counting: CountingModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Speech played backwards decodes to improbable text: the case Whisper retries at higher
    # temperatures. With faster-whisper's default six temperatures it tries them all.
    backwards = spoken("The migration finished before the deadline and nobody noticed at all.")
    backwards = backwards[::-1].copy()
    with monkeypatch.context() as patch:
        patch.setattr(accurate, "TEMPERATURES", (0.0, 0.2, 0.4, 0.6, 0.8, 1.0))
        engine.transcribe_words(backwards, "")
    unbounded = decodes_per_window(counting.temperatures)
    counting.temperatures.clear()

    engine.transcribe_words(backwards, "")
    bounded = decodes_per_window(counting.temperatures)

    assert max(unbounded) > len(TEMPERATURES), counting.temperatures
    assert max(bounded) == len(TEMPERATURES) == 2, counting.temperatures
    assert set(counting.temperatures) <= set(TEMPERATURES)


def test_silence_gives_no_words(engine: WhisperAccurate) -> None:
    assert engine.transcribe_words(np.zeros(3 * RATE, np.float32), "").words == ()


def test_the_engine_names_its_model_by_its_sha256(engine: WhisperAccurate) -> None:
    paths = ModelPaths(models_dir_from_env())
    model_bin = next(f for f in paths.files if f.path == f"whisper-{paths.accurate}/model.bin")
    assert engine.model_id == model_bin.sha256
    assert engine.name == f"whisper-{paths.accurate}"


def test_context_is_the_question_then_the_terms() -> None:
    context = accurate_context("  How would you\n scale it? ", ["PostgreSQL", " p95 ", ""])
    assert context == "How would you scale it? Terms: PostgreSQL, p95."
    assert accurate_context(None, []) == ""
    assert accurate_context(None, ["Kafka"]) == "Terms: Kafka."
    assert len(accurate_context("x" * 2000, ["y"] * 500)) <= 600


def test_a_transcript_text_joins_its_words() -> None:
    words = (TimedWord(" Hello", 0.0, 0.4), TimedWord(" world.", 0.4, 0.9))
    assert TimedTranscript(words).text == "Hello world."
    assert TimedTranscript(()).text == ""


def test_the_spec_follows_the_settings_and_survives_pickling(tmp_path: Path) -> None:
    assert accurate_spec(Settings(accurate_stt_model="off")) is None
    spec = accurate_spec(Settings(models_dir=tmp_path, accurate_stt_beam_size=3))
    assert spec is not None
    assert spec.model_dir == tmp_path / "whisper-base"
    assert spec.beam_size == 3
    assert 1 <= spec.cpu_threads <= 2
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_the_spec_builds_a_working_engine() -> None:
    paths = ModelPaths(models_dir_from_env())
    assert paths.accurate_dir is not None
    built = AccurateSpec(paths.accurate_dir, beam_size=1, cpu_threads=1).build()
    built.warmup()
    result = built.transcribe_words(spoken("The deploy went out on Friday."), "")
    assert words_of(result.text) == ["the", "deploy", "went", "out", "on", "friday"]


def test_a_word_after_a_pause_starts_at_its_sound_not_in_the_pause() -> None:
    # 20 ms frames: sound for 1 s, a 1 s pause, sound again. Whisper's alignment may give the
    # pause to the next word (measured: "nightly" from 2.99 s to 4.55 s, said at 4.2 s).
    loud = np.array([True] * 50 + [False] * 50 + [True] * 50)
    assert accurate.snap_to_sound(loud, 1.2, 2.6) == (2.0, 2.6)
    # A word's own quiet start (under 0.2 s) is left as it is.
    assert accurate.snap_to_sound(loud, 1.9, 2.6) == (1.9, 2.6)
    # Silence after the last sound is cut from the word's end as well.
    assert accurate.snap_to_sound(loud, 0.5, 1.6) == (0.5, 1.0)
    # A word with no sound in its span keeps its times.
    assert accurate.snap_to_sound(loud, 1.2, 1.8) == (1.2, 1.8)


def test_the_tail_of_the_previous_word_does_not_hold_the_next_word_in_the_pause() -> None:
    # Measured on a spoken answer: "because" trails off into the pause, and Whisper starts
    # "nightly" there. The word starts after the pause all the same.
    loud = np.array([True] * 50 + [True] * 5 + [False] * 45 + [True] * 50)
    assert accurate.snap_to_sound(loud, 1.0, 2.6) == (2.0, 2.6)
