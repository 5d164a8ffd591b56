"""Models load once at start-up: until they are warm, health says "loading" and offers wait."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from harness.app_server import AppServer
from tests.e2e.conftest import voice_env


def wait_for_schema(server: AppServer) -> None:
    """Until the database schema is ready: within moments, before any model is (a /start
    before it gets 503 database_unavailable with Retry-After)."""
    deadline = time.monotonic() + 20
    while not httpx.get(f"{server.api}/health", timeout=10).json()["checks"]["schema"]["ok"]:
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.05)


def test_health_reports_loading_until_the_models_are_warm(tmp_path: Path):
    server = AppServer(tmp_path / "server.log", voice_env(tmp_path))
    server.start(expect_healthy=False)
    try:
        first = httpx.get(f"{server.api}/health", timeout=10)
        assert first.status_code == 503
        assert first.json()["checks"]["voice"]["detail"].startswith("loading")
        wait_for_schema(server)
        assert (
            httpx.get(f"{server.api}/health", timeout=10)
            .json()["checks"]["voice"]["detail"]
            .startswith("loading")
        )
        session = httpx.post(f"{server.api}/start", json={"user_id": "early"}, timeout=10).json()
        early = httpx.post(
            f"{server.api}/{session['session_id']}/rtc/offer",
            json={"sdp": "v=0", "type": "offer"},
            headers={"Authorization": f"Bearer {session['token']}"},
            timeout=10,
        )
        assert early.status_code == 503 and early.headers["retry-after"] == "5"
        assert early.json()["error"]["code"] == "voice_loading"
        # No engine to ask yet: a voice is only checked for its form, so /start never waits.
        unchecked = httpx.post(
            f"{server.api}/start", json={"user_id": "early", "voice": "zz_unheard"}, timeout=10
        )
        assert unchecked.status_code == 201, unchecked.text

        deadline = time.monotonic() + 120
        while httpx.get(f"{server.api}/health", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, server.log()[-3000:]
            time.sleep(0.5)
        ready = httpx.get(f"{server.api}/health", timeout=10).json()
        assert ready["checks"]["voice"]["detail"].startswith("ready")

        # Warm, the voices are Kokoro's own: an unknown one is refused with the list.
        unknown = httpx.post(
            f"{server.api}/start", json={"user_id": "u", "voice": "zz_unheard"}, timeout=10
        )
        assert unknown.status_code == 422
        error = unknown.json()["error"]
        assert error["code"] == "unknown_voice" and "zz_unheard" in error["message"]
        assert all(f"{voice}," in error["message"] for voice in ("af_heart", "bf_emma"))
        chosen = httpx.post(
            f"{server.api}/start", json={"user_id": "u", "voice": "bf_emma"}, timeout=10
        ).json()
        status = httpx.get(
            f"{server.api}/{chosen['session_id']}/status",
            headers={"Authorization": f"Bearer {chosen['token']}"},
            timeout=10,
        ).json()
        assert status["voice"] == "bf_emma"
    finally:
        server.stop()


def test_missing_model_files_are_named_in_health(tmp_path: Path):
    server = AppServer(
        tmp_path / "server.log", voice_env(tmp_path, MODELS_DIR=str(tmp_path / "no-models"))
    )
    server.start(expect_healthy=False)
    try:
        deadline = time.monotonic() + 60
        while True:
            voice = httpx.get(f"{server.api}/health", timeout=10).json()["checks"]["voice"]
            if not voice["detail"].startswith("loading") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert voice["ok"] is False
        assert "kokoro-v1.0.int8.onnx" in voice["detail"] and "make models" in voice["detail"]
        # Text interviews still work (missing files fail at once, maybe before the schema).
        wait_for_schema(server)
        started = httpx.post(f"{server.api}/start", json={"user_id": "u"}, timeout=10)
        assert started.status_code == 201
    finally:
        server.stop()
