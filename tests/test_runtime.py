"""Runtime.build: how the parts are wired from Settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from interview.config import InterviewerEngine, Settings
from interview.runtime import Runtime
from interview.speech.sentences import split_sentences


@pytest.mark.parametrize("engine", [InterviewerEngine.scripted, InterviewerEngine.llm])
def test_the_speech_cache_keeps_only_the_plans_words_on_disk(
    engine: InterviewerEngine, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'spool.db'}",
        voice_enabled=False,
        interviewer=engine,
        openai_api_key=SecretStr("sk-test-not-used"),
    )
    runtime = Runtime.build(settings)
    assert runtime.service.interviewer.engine is engine
    keep = runtime.speech.keep_on_disk
    assert keep is not None
    plan = runtime.plans.get(settings.default_plan_id)
    for line in [plan.greeting, plan.closing, settings.check_in_line, plan.questions[-1].text]:
        assert all(keep(piece) for piece in split_sentences(line)), line
    assert not keep("You said you moved the billing system to Kafka.")
