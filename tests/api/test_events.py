"""Live events over Server-Sent Events, and the Last-Event-ID path that survives API Gateway's
30 s limit: each response ends early and the client resumes where it stopped."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.app_server import AppServer
from harness.postgres import PostgresServer
from harness.sse import Sse, read_events
from tests.api.buffering_proxy import buffering_proxy
from tests.api.helpers import auth

ANSWER = "I moved our deploys to blue-green releases, which removed most of our downtime."
STREAM_SECONDS = 1.5
# Poll delivery's timeout when nothing happens: long, so a response that ended early did so
# because of its events.
POLL_STREAM_SECONDS = 4.0


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


@pytest.fixture(scope="module")
def poll_server(tmp_path_factory) -> Iterator[AppServer]:
    directory: Path = tmp_path_factory.mktemp("events-poll")
    server = AppServer(
        directory / "server.log",
        {
            "DATABASE_URL": f"sqlite:///{directory}/spool.db",
            "EVENTS_STREAM_SECONDS": str(POLL_STREAM_SECONDS),
            "EVENTS_DELIVERY": "poll",
        },
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def two_instances(
    postgres_server: PostgresServer, tmp_path_factory
) -> Iterator[tuple[AppServer, AppServer]]:
    """Two servers on one PostgreSQL database, as two tasks behind a load balancer."""
    directory: Path = tmp_path_factory.mktemp("events-pg")
    env = {"DATABASE_URL": postgres_server.create_database(), "EVENTS_STREAM_SECONDS": "3"}
    servers = (AppServer(directory / "a.log", env), AppServer(directory / "b.log", env))
    for server in servers:
        server.start()
    yield servers
    for server in servers:
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


def event_id(event: Sse) -> int:
    assert event.id is not None, event  # every event of the stream carries its id
    return int(event.id)


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

        ids = [event_id(e) for e in first + second + third]
        assert ids == sorted(set(ids))  # strictly increasing: no duplicates, no reordering


async def test_the_stream_ends_with_the_results(short_stream_server: AppServer):
    async with httpx.AsyncClient(base_url=short_stream_server.api, timeout=30) as client:
        session = (await client.post("/start", json={"user_id": "sse"})).json()
        sid, token = session["session_id"], session["token"]
        await client.post(f"/{sid}/end", headers=auth(token))
        events, seconds = await collect(client, sid, token)
        assert events[-1].event == "results"
        assert events[-1].data == {"type": "results", "status": "ready"}
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


async def test_poll_delivery_gets_events_through_a_buffering_proxy(poll_server: AppServer):
    # API Gateway's HTTP APIs forward a response only once it has ended. With EVENTS_DELIVERY=poll
    # a response ends shortly after its first event, so a client that asks again at once with
    # Last-Event-ID (as ui/web's client does) gets each event promptly, not in 25 s batches.
    loop = asyncio.get_running_loop()
    async with (
        buffering_proxy(poll_server.base_url) as proxy,
        httpx.AsyncClient(base_url=f"{proxy}/api/interview", timeout=30) as client,
    ):
        session = (await client.post("/start", json={"user_id": "poll"})).json()
        sid, token = session["session_id"], session["token"]

        first, seconds = await collect(client, sid, token)
        assert [e.event for e in first] == ["status", "turn"]  # the replay, then the end
        assert seconds < 1.5 < POLL_STREAM_SECONDS

        received: list[tuple[float, Sse]] = []

        async def follow(last_id: str | None) -> None:
            while not any(e.data.get("role") == "interviewer" for _, e in received):
                events, _ = await collect(client, sid, token, last_id=last_id)
                received.extend((loop.time(), e) for e in events)
                last_id = events[-1].id if events else last_id

        async def answer() -> float:
            await asyncio.sleep(0.5)
            reply = await client.post(
                f"/{sid}/transcript", json={"text": ANSWER}, headers=auth(token)
            )
            assert reply.status_code == 200
            return loop.time()

        _, answered = await asyncio.wait_for(
            asyncio.gather(follow(first[-1].id), answer()), POLL_STREAM_SECONDS * 3
        )
        events = [e for _, e in received]
        assert [(e.event, e.data.get("role")) for e in events] == [
            ("status", None),
            ("turn", "candidate"),
            ("turn", "interviewer"),
        ]
        # Through the buffering proxy, within a second of the answer, not at the timeout.
        assert all(at - answered < 1.0 for at, _ in received)
        ids = [event_id(e) for e in first + events]
        assert ids == sorted(set(ids))


async def test_poll_delivery_still_waits_while_nothing_happens(poll_server: AppServer):
    async with httpx.AsyncClient(base_url=poll_server.api, timeout=30) as client:
        session = (await client.post("/start", json={"user_id": "poll"})).json()
        sid, token = session["session_id"], session["token"]
        first, _ = await collect(client, sid, token)
        idle, seconds = await collect(client, sid, token, last_id=first[-1].id)
        assert idle == []  # no empty responses in a loop: it ends at the usual timeout
        assert POLL_STREAM_SECONDS <= seconds < POLL_STREAM_SECONDS + 3


async def test_events_reach_a_subscriber_on_another_instance_and_resume_on_either(
    two_instances: tuple[AppServer, AppServer],
):
    a, b = two_instances
    async with (
        httpx.AsyncClient(base_url=a.api, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.api, timeout=30) as on_b,
    ):
        session = (await on_a.post("/start", json={"user_id": "sse"})).json()
        sid, token = session["session_id"], session["token"]

        async def answer_on_a() -> None:
            await asyncio.sleep(0.5)
            reply = await on_a.post(
                f"/{sid}/transcript", json={"text": ANSWER}, headers=auth(token)
            )
            assert reply.status_code == 200

        # Followed on B while the answer is given on A: the history, then the live turn.
        (seen, _), _ = await asyncio.gather(collect(on_b, sid, token), answer_on_a())
        assert [(e.event, e.data.get("role") or e.data.get("status")) for e in seen] == [
            ("status", "created"),
            ("turn", "interviewer"),
            ("status", "active"),
            ("turn", "candidate"),
            ("turn", "interviewer"),
        ]

        # Ended on B; the client, back on A with its Last-Event-ID, gets exactly the rest.
        assert (await on_b.post(f"/{sid}/end", headers=auth(token))).status_code == 200
        rest, _ = await collect(on_a, sid, token, last_id=seen[-1].id)
        assert [e.event for e in rest] == ["status", "results"]
        assert rest[0].data["status"] == "ended" and rest[1].data["status"] == "ready"
        ids = [event_id(e) for e in seen + rest]
        assert ids == sorted(set(ids))
        # Either instance replays the same history.
        again, _ = await collect(on_b, sid, token)
        assert [event_id(e) for e in again] == ids
