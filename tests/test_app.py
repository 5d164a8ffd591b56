"""The application object: draining on a stop signal, and offline docs."""

import asyncio
import re
import signal
from pathlib import Path

import httpx
import uvicorn

from app import DrainingServer, create_app
from harness.runtime import wait_until_ready
from interview.config import Settings


def make_app(tmp_path: Path):
    return create_app(Settings(database_url=f"sqlite:///{tmp_path}/spool.db", voice_enabled=False))


async def test_a_stop_signal_turns_health_to_draining(tmp_path: Path):
    app = make_app(tmp_path)
    runtime = app.state.runtime
    server = DrainingServer(uvicorn.Config(app), runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await runtime.start()
        try:
            await wait_until_ready(runtime)
            assert (await client.get("/api/interview/health")).status_code == 200
            assert (await client.get("/api/interview/health/live")).status_code == 200
            server.handle_exit(signal.SIGTERM, None)
            response = await client.get("/api/interview/health")
            assert response.status_code == 503
            assert response.json()["checks"]["accepting"] == {"ok": False, "detail": "draining"}
            # The load balancer's shallow check says so too.
            live = await client.get("/api/interview/health/live")
            assert live.status_code == 503
            assert live.json() == {"status": "unavailable", "detail": "draining"}
        finally:
            await runtime.stop()
    assert server.should_exit


async def test_docs_need_no_internet(tmp_path: Path):
    transport = httpx.ASGITransport(app=make_app(tmp_path))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert "https://" not in page.text and "//cdn" not in page.text
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
        for asset in assets:
            assert (await client.get(asset)).status_code == 200, asset
        redoc = await client.get("/redoc")
        assert "https://" not in redoc.text


async def test_liveness_waits_for_the_voice_models(tmp_path: Path):
    # A new task takes no interviews before its models are warm (the ALB's health check).
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/spool.db",
        voice_enabled=True,
        models_dir=tmp_path / "no-models",  # e.g. a model file missing from the image
    )
    app = create_app(settings)
    runtime = app.state.runtime
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert runtime.voice.state == "loading"  # nothing started: the models are not loaded
        loading = await client.get("/api/interview/health/live")
        assert loading.status_code == 503
        assert loading.json() == {"status": "unavailable", "detail": "voice loading"}
        await runtime.speech.load()
        await runtime.voice.open()
        assert runtime.voice.state == "failed"  # replace the task: it never gets better
        failed = await client.get("/api/interview/health/live")
        assert failed.status_code == 503
        assert failed.json() == {"status": "unavailable", "detail": "voice failed"}
    runtime.speech.shutdown()


async def test_any_origin_is_allowed_without_credentials(tmp_path: Path):
    # CORS_ORIGINS=*: any site may call the API, but never with the caller's cookies.
    app = create_app(
        Settings(
            database_url=f"sqlite:///{tmp_path}/spool.db",
            voice_enabled=False,
            environment="production",
            cors_origins="*",
        )
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        preflight = await client.options(
            "/api/interview/start",
            headers={"Origin": "https://any.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in preflight.headers


async def test_a_typed_answer_may_carry_its_idempotency_key_cross_origin(tmp_path: Path):
    # The browser client sends Idempotency-Key on every answer: its preflight must pass.
    app = create_app(
        Settings(
            database_url=f"sqlite:///{tmp_path}/spool.db",
            voice_enabled=False,
            environment="production",
            cors_origins="https://hiring.example",
        )
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        preflight = await client.options(
            "/api/interview/some-session/transcript",
            headers={
                "Origin": "https://hiring.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
            },
        )
        assert preflight.status_code == 200, preflight.text
        allowed = preflight.headers["access-control-allow-headers"].lower().split(",")
        assert "idempotency-key" in [header.strip() for header in allowed]


async def test_a_database_the_migrations_cannot_upgrade_shows_in_health(tmp_path: Path):
    # A revision this code does not know (written by a newer release): no retry helps, and
    # health says why instead of "initializing" for ever.
    import sqlite3

    with sqlite3.connect(tmp_path / "spool.db") as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        db.execute("INSERT INTO alembic_version VALUES ('9999_from_the_future')")
    app = make_app(tmp_path)
    runtime = app.state.runtime
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await runtime.start()
        try:
            for _ in range(100):
                if runtime.schema_error is not None:
                    break
                await asyncio.sleep(0.05)
            health = await client.get("/api/interview/health")
            assert health.status_code == 503
            schema = health.json()["checks"]["schema"]
            assert schema["ok"] is False
            assert (
                schema["detail"].startswith("failed: ")
                and "9999_from_the_future" in schema["detail"]
            ), schema
        finally:
            await runtime.stop()
