"""Live events over Server-Sent Events, and the Last-Event-ID path that survives API Gateway's
30 s limit: each response ends early and the client resumes where it stopped."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import auth
from tests.support.app_server import AppServer
from tests.support.sse import Sse, read_events

ANSWER = "I moved our deploys to blue-green releases, which removed most of our downtime."
STREAM_SECONDS = 1.5


@pytest.fixture(scope="module")
def short_stream_server(tmp_path_factory) -> Iterator[AppServer]:
    directory: Path = tmp_path_factory.mktemp("events")
    server = AppServer(
        directory / "server.log",
        {
            "DATABASE_URL": f"sqlite:///{directory}/spool.db",
            "EVENTS_STREAM_SECONDS": str(STREAM_SECONDS),
        },
    )
    server.start()
    yield server
    server.stop()


async def collect(
    client: httpx.AsyncClient, sid: str, token: str, last_id: str | None = None
) -> tuple[list[Sse], float]:
    headers = auth(token) | ({"Last-Event-ID": last_id} if last_id else {})
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with client.stream("GET", f"/{sid}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [event async for event in read_events(response)]
    return events, loop.time() - started


async def test_events_resume_with_last_event_id(short_stream_server: AppServer):
    async with httpx.AsyncClient(base_url=short_stream_server.api, timeout=30) as client:
        session = (await client.post("/start", json={"user_id": "sse"})).json()
        sid, token = session["session_id"], session["token"]

        first, seconds = await collect(client, sid, token)
        # Without Last-Event-ID the session's history is replayed: created, then the opening.
        assert [e.event for e in first] == ["status", "turn"]
        assert first[1].data["role"] == "interviewer" and first[1].data["index"] == 0
        assert all(e.retry == 1000 for e in first)
        # The response ended on its own, well inside API Gateway's 30 s.
        assert STREAM_SECONDS <= seconds < STREAM_SECONDS + 5

        async def answer_soon() -> None:
            await asyncio.sleep(0.3)
            reply = await client.post(
                f"/{sid}/transcript", json={"text": ANSWER}, headers=auth(token)
            )
            assert reply.status_code == 200

        # Resume from the last id while a turn happens: only the new events arrive.
        (second, _), _ = await asyncio.gather(
            collect(client, sid, token, last_id=first[-1].id), answer_soon()
        )
        assert [(e.event, e.data.get("role")) for e in second] == [
            ("status", None),
            ("turn", "candidate"),
            ("turn", "interviewer"),
        ]
        assert second[0].data["status"] == "active"
        assert second[1].data["text"] == ANSWER

        # Missed while disconnected: a turn made between two responses is not lost.
        await client.post(f"/{sid}/transcript", json={"text": ANSWER}, headers=auth(token))
        third, _ = await collect(client, sid, token, last_id=second[-1].id)
        assert [e.data.get("index") for e in third] == [3, 4]

        ids = [int(e.id) for e in first + second + third]
        assert ids == sorted(set(ids))  # strictly increasing: no duplicates, no reordering


async def test_the_stream_ends_with_the_results(short_stream_server: AppServer):
    async with httpx.AsyncClient(base_url=short_stream_server.api, timeout=30) as client:
        session = (await client.post("/start", json={"user_id": "sse"})).json()
        sid, token = session["session_id"], session["token"]
        await client.post(f"/{sid}/end", headers=auth(token))
        events, seconds = await collect(client, sid, token)
        assert events[-1].event == "results" and events[-1].data == {"status": "ready"}
        assert ("status", "ended") in [(e.event, e.data.get("status")) for e in events]
        assert seconds < STREAM_SECONDS  # ended by the results, not by the timer


async def test_events_need_the_token(short_stream_server: AppServer):
    async with httpx.AsyncClient(base_url=short_stream_server.api, timeout=30) as client:
        session = (await client.post("/start", json={"user_id": "sse"})).json()
        assert (await client.get(f"/{session['session_id']}/events")).status_code == 401
        wrong = await client.get(f"/{session['session_id']}/events", headers=auth("nope"))
        assert wrong.status_code == 404
        bad_id = await client.get(
            f"/{session['session_id']}/events",
            headers=auth(session["token"]) | {"Last-Event-ID": "not-a-number"},
        )
        assert bad_id.status_code == 422
