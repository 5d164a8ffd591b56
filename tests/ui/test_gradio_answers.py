"""A typed answer in the Gradio page when the database fails under it: the page says to send it
again (its key makes that safe) instead of Gradio's bare "Error". In-process, on a real SQLite
database; the page's keys over HTTP are tests/ui/test_gradio_app.py's, in Chromium
tests/e2e/test_gradio_ui.py's."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import gradio as gr
import pytest

from harness.runtime import wait_until_ready
from interview.config import Settings
from interview.runtime import Runtime
from ui.gradio_app import DemoUI


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    runtime = Runtime.build(
        Settings(database_url=f"sqlite:///{tmp_path}/spool.db", voice_enabled=False)
    )
    await runtime.start()
    try:
        await wait_until_ready(runtime)
        yield runtime
    finally:
        await runtime.stop()


async def test_a_database_failure_mid_answer_asks_to_send_it_again(
    runtime: Runtime, tmp_path: Path
) -> None:
    ui = DemoUI(runtime)
    page = uuid.uuid4().hex[:11]
    await ui.start(page, runtime.settings.default_plan_id)
    # The transcript's table goes away under the service: its next write fails in the driver.
    with sqlite3.connect(tmp_path / "spool.db") as db:
        db.execute("DROP TABLE interview_turns")
    with pytest.raises(gr.Error, match="Press Send again") as refused:
        await ui.answer(page, "I built a billing service in Python.", str(uuid.uuid4()))
    assert "stored twice" in str(refused.value)
