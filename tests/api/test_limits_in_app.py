"""The limits inside the app, without a server: on and off by RATE_LIMIT_ENABLED, each limit
its own counter, and the 429s declared where they can happen."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app import create_app
from harness.runtime import wait_until_ready
from interview.config import Settings


async def starts(tmp_path: Path, count: int, **settings: object) -> list[int]:
    base = {"database_url": f"sqlite:///{tmp_path}/spool.db", "voice_enabled": False}
    app = create_app(Settings.model_validate({**base, **settings}))
    runtime = app.state.runtime
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/interview") as c:
        await runtime.start()
        try:
            await wait_until_ready(runtime)
            responses = [await c.post("/start", json={"user_id": "u"}) for _ in range(count)]
        finally:
            await runtime.stop()
    return [r.status_code for r in responses]


async def test_over_the_limit_is_429(tmp_path: Path):
    assert await starts(tmp_path, 4, rate_limit_start="3/minute") == [201, 201, 201, 429]


async def test_rate_limit_enabled_false_turns_the_limits_off(tmp_path: Path):
    codes = await starts(tmp_path, 4, rate_limit_start="3/minute", rate_limit_enabled=False)
    assert codes == [201] * 4


async def test_a_limit_of_answers_does_not_count_starts(tmp_path: Path):
    codes = await starts(tmp_path, 4, rate_limit_start="5/minute", rate_limit_answers="1/minute")
    assert codes == [201] * 4


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/interview/start", "post"),
        ("/api/interview/{session_id}/transcript", "post"),
        ("/api/interview/{session_id}/events", "get"),
    ],
)
def test_the_429_is_declared(tmp_path: Path, path: str, method: str):
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/spool.db", voice_enabled=False))
    responses = app.openapi()["paths"][path][method]["responses"]
    assert "429" in responses
    schema = responses["429"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}
