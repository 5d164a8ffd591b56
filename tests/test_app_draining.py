"""app.py while draining: what is refused (new interviews, new voice connections) and what goes on
(answers, transcripts, the live interviews), and the drain's time budget."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import uvicorn

from app import DRAINING_RETRY_AFTER_SECONDS, DrainingServer, create_app
from harness.runtime import wait_until_ready
from interview.config import Settings


async def test_draining_refuses_new_interviews_but_not_live_ones(tmp_path: Path):
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/spool.db", voice_enabled=False))
    runtime = app.state.runtime
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/interview") as api:
        await runtime.start()
        try:
            await wait_until_ready(runtime)
            session = (await api.post("/start", json={"user_id": "u"})).json()
            sid, headers = session["session_id"], {"Authorization": f"Bearer {session['token']}"}

            runtime.draining = True
            refused = await api.post(
                "/start", json={"user_id": "late"}, headers={"Origin": "http://localhost:3000"}
            )
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "draining"
            assert refused.headers["retry-after"] == str(DRAINING_RETRY_AFTER_SECONDS)
            # CORS still applies, so a browser can read why and retry.
            assert refused.headers["access-control-allow-origin"] == "http://localhost:3000"
            offer = await api.post(
                f"/{sid}/rtc/offer", json={"sdp": "v=0", "type": "offer"}, headers=headers
            )
            assert offer.status_code == 503 and offer.json()["error"]["code"] == "draining"

            # The interview already running goes on.
            body = {"text": "An answer that is long enough to need no follow-up at all."}
            answer = await api.post(f"/{sid}/transcript", json=body, headers=headers)
            assert answer.status_code == 200
            assert (await api.get(f"/{sid}/transcript", headers=headers)).status_code == 200
            assert (await api.get("/plans")).status_code == 200
            assert (await api.get("/health")).status_code == 503
        finally:
            await runtime.stop()


async def test_the_drain_fits_the_grace_period(tmp_path: Path):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/spool.db",
        voice_enabled=False,
        shutdown_grace_seconds=8,
    )
    app = create_app(settings)
    runtime = app.state.runtime
    server = DrainingServer(uvicorn.Config(app), runtime)
    await runtime.start()
    try:
        # As after start-up: the first signal drains on the loop instead of exiting at once.
        server._loop, server.started = asyncio.get_running_loop(), True
        server.handle_exit(signal.SIGTERM, None)
        assert runtime.draining and not server.should_exit
        started = asyncio.get_running_loop().time()
        for _ in range(100):
            if server.should_exit:
                break
            await asyncio.sleep(0.05)
        # Nothing live: uvicorn is told to stop at once, with the rest of the grace period
        # shared between the requests in flight and the lifespan shutdown.
        assert server.should_exit
        assert asyncio.get_running_loop().time() - started < 2
        assert 1 <= server.config.timeout_graceful_shutdown <= 4
        assert runtime.stop_by is not None and runtime.stop_by - started <= 8.5
    finally:
        await runtime.stop()
