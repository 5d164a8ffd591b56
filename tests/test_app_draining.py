"""app.py while draining: what is refused (new interviews, new voice connections) and what goes on
(answers, transcripts, the live interviews), how long it keeps serving (its minimum, the
requests in flight, within the grace period), and how it ends the open event streams."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from app import DRAINING_RETRY_AFTER_SECONDS, DrainingServer, create_app
from harness.runtime import wait_until_ready
from interview.config import Settings
from tests.api.helpers import auth


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


def draining_server(tmp_path: Path, **settings: Any) -> tuple[DrainingServer, FastAPI]:
    app = create_app(
        Settings(database_url=f"sqlite:///{tmp_path}/spool.db", voice_enabled=False, **settings)
    )
    return DrainingServer(uvicorn.Config(app), app.state.runtime, app.state.traffic), app


async def signalled(server: DrainingServer) -> float:
    """SIGTERM, as after start-up: the first signal drains on the loop instead of exiting."""
    server._loop, server.started = asyncio.get_running_loop(), True
    server.handle_exit(signal.SIGTERM, None)
    assert server.runtime.draining and not server.should_exit
    return asyncio.get_running_loop().time()


async def until_exit(server: DrainingServer, within: float) -> float:
    """When uvicorn was told to stop (loop time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not server.should_exit:
        assert loop.time() < deadline, "uvicorn was never told to stop"
        await asyncio.sleep(0.02)
    return loop.time()


async def test_with_nothing_live_the_drain_serves_for_its_minimum(tmp_path: Path):
    server, _ = draining_server(tmp_path, shutdown_grace_seconds=12, drain_min_seconds=1.5)
    runtime = server.runtime
    await runtime.start()
    try:
        started = await signalled(server)
        # Still listening and serving, so a load balancer can take it out of rotation first.
        await asyncio.sleep(1.2)
        assert not server.should_exit
        stopped = await until_exit(server, within=3)
        assert 1.5 <= stopped - started < 2.0
        # The rest of the grace period: half for requests in flight, the rest for the lifespan.
        assert server.config.timeout_graceful_shutdown == 5
        assert runtime.stop_by is not None and runtime.stop_by - started <= 12.1
    finally:
        await runtime.stop()


async def test_the_drain_fits_a_short_grace_period(tmp_path: Path):
    server, _ = draining_server(tmp_path, shutdown_grace_seconds=4, drain_min_seconds=5)
    await server.runtime.start()
    try:
        started = await signalled(server)
        # DRAIN_MIN_SECONDS is cut to what the grace period leaves the drain (4 - 2 s).
        stopped = await until_exit(server, within=4)
        assert 2 <= stopped - started < 2.5
        assert server.config.timeout_graceful_shutdown == 1
    finally:
        await server.runtime.stop()


async def test_the_drain_waits_for_the_requests_in_flight(tmp_path: Path):
    server, app = draining_server(tmp_path, shutdown_grace_seconds=20, drain_min_seconds=0.5)
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow() -> dict[str, str]:
        entered.set()
        await release.wait()
        return {"done": "yes"}

    app.add_api_route("/slow", slow)
    runtime = server.runtime
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await runtime.start()
        try:
            await wait_until_ready(runtime)
            pending = asyncio.create_task(client.get("/slow"))
            await entered.wait()
            assert server.traffic.in_flight == 1
            started = await signalled(server)
            await asyncio.sleep(1.5)
            assert not server.should_exit  # past the minimum: the request is still answered
            # Meanwhile each response closes its connection; the client's next request opens a
            # new one, which a load balancer sends to an instance that stays.
            plans = await client.get("/api/interview/plans")
            assert plans.status_code == 200 and plans.headers["connection"] == "close"
            release.set()
            answered = await pending
            assert answered.json() == {"done": "yes"}
            assert answered.headers["connection"] == "close"
            stopped = await until_exit(server, within=1)
            assert stopped - started < 2.5
        finally:
            await runtime.stop()


async def test_the_drain_ends_event_streams_with_a_complete_response(tmp_path: Path):
    server, app = draining_server(tmp_path, events_stream_seconds=600)
    runtime, traffic = server.runtime, server.traffic
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/interview") as api:
        await runtime.start()
        try:
            await wait_until_ready(runtime)
            session = (await api.post("/start", json={"user_id": "u"})).json()
            path, headers = f"/{session['session_id']}/events", auth(session["token"])
            stream = asyncio.create_task(api.get(path, headers=headers))
            async with asyncio.timeout(5):
                while traffic.streams == 0:  # noqa: ASYNC110 - a count, no event to wait on
                    await asyncio.sleep(0.01)
            assert traffic.in_flight == 0  # a stream is not a request the drain waits for
            assert await traffic.end_streams() == 1
            # Held open for EVENTS_STREAM_SECONDS (600 s) otherwise; ended, it is whole.
            ended = await asyncio.wait_for(stream, 5)
            assert ended.status_code == 200
            assert "event: status" in ended.text and "event: turn" in ended.text
            # One that starts once the streams were ended ends as soon as it starts.
            late = await asyncio.wait_for(api.get(path, headers=headers), 5)
            assert late.status_code == 200 and late.text == ""
            assert traffic.streams == 0
        finally:
            await runtime.stop()
