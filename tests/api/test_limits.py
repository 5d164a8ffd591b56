"""The limits on abuse, over real servers: a flood of /start from one client gets 429 with a
correct Retry-After while another client is served, and nothing of a refused request is
written; answers are limited per client; a forged X-Forwarded-For or Forwarded does not escape
the limit behind a real proxy (HAProxy, or one that appends Forwarded as API Gateway does); the
limit holds across two instances on one PostgreSQL, and a limiter whose table is gone lets
requests through; a stalled or trickling request body gets 408 and its connection closed, while
event streams and Gradio's routes are left alone; a session's event streams are capped, and a
closed stream (even one cut abruptly) frees its slot.

Each client connects from an address of its own on the loopback network (127.0.0.N: Linux
routes all of 127/8 to the loopback interface), so the server or the proxy sees distinct
clients, as it would on the internet.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import select
import socket
import sqlite3
import struct
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from harness.app_server import AppServer
from harness.cluster import Cluster
from harness.haproxy import SERVED_BY
from harness.http_proxy import http_proxy
from harness.sse import read_events
from tests.api.helpers import auth

_ADDRESSES = itertools.count(10)
START_LIMIT = 4
ANSWER_LIMIT = 3
WINDOW = 6  # seconds: short enough to wait out, long enough for a burst on a busy machine
LIMITED = {
    "RATE_LIMIT_START": f"{START_LIMIT} per {WINDOW} seconds",
    "RATE_LIMIT_ANSWERS": f"{ANSWER_LIMIT} per {WINDOW} seconds",
    "EVENTS_MAX_STREAMS": "2",
    "EVENTS_STREAM_SECONDS": "60",
    "REQUEST_BODY_TIMEOUT_SECONDS": "1",
}
# Long enough that the scripted interviewer asks no follow-up.
ANSWER = "I moved the billing code into its own service and gave it a database of its own."


def new_address() -> str:
    """A loopback address no other test uses: a new client to the limits."""
    return f"127.0.0.{next(_ADDRESSES)}"


@contextmanager
def client(base_url: str) -> Iterator[httpx.Client]:
    transport = httpx.HTTPTransport(local_address=new_address())
    with httpx.Client(base_url=base_url, transport=transport, timeout=10) as http:
        yield http


def async_client(base_url: str, timeout: float = 10) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=new_address())
    return httpx.AsyncClient(base_url=base_url, transport=transport, timeout=timeout)


def start(http: httpx.Client, user_id: str, **headers: str) -> httpx.Response:
    return http.post("/start", json={"user_id": user_id}, headers=headers)


def assert_rate_limited(response: httpx.Response) -> int:
    """The 429 of a rate limit; returns its Retry-After."""
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= WINDOW
    return retry_after


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """One instance on SQLite, reached directly (FORWARDED_ALLOW_IPS: 127.0.0.1 only)."""
    directory = tmp_path_factory.mktemp("limits")
    app = AppServer(
        directory / "server.log", {"DATABASE_URL": f"sqlite:///{directory}/spool.db", **LIMITED}
    )
    app.start()
    yield app
    app.stop()


def sessions_of(server: AppServer, user_prefix: str) -> int:
    url = server.env["DATABASE_URL"]
    with sqlite3.connect(Path(url.removeprefix("sqlite:///"))) as db:
        (count,) = db.execute(
            "SELECT count(*) FROM interview_sessions WHERE user_id LIKE ?", (f"{user_prefix}%",)
        ).fetchone()
    return int(count)


# -- rate limits ---------------------------------------------------------------------------------


def test_a_flood_of_starts_is_refused_after_the_limit_while_another_client_is_served(
    server: AppServer,
):
    with client(server.api) as flooder, client(server.api) as other:
        codes = [start(flooder, f"flood-{i}").status_code for i in range(START_LIMIT + 6)]
        assert codes == [201] * START_LIMIT + [429] * 6
        # An X-Forwarded-For from a peer that FORWARDED_ALLOW_IPS does not trust is not believed.
        assert_rate_limited(start(flooder, "flood-forged", **{"X-Forwarded-For": "198.51.100.7"}))
        assert start(other, "other-client").status_code == 201
    # The refused requests wrote nothing.
    assert sessions_of(server, "flood-") == START_LIMIT


def test_retry_after_says_when_the_window_ends(server: AppServer):
    with client(server.api) as http:
        sent_first = time.monotonic()
        assert start(http, "retry").status_code == 201
        answered_first = time.monotonic()
        for _ in range(START_LIMIT - 1):
            assert start(http, "retry").status_code == 201
        sent = time.monotonic()
        retry_after = assert_rate_limited(start(http, "retry"))
        answered = time.monotonic()
        # The window began while the first request was served and lasts WINDOW seconds;
        # Retry-After is the time left, rounded up.
        assert sent_first + WINDOW - answered <= retry_after
        assert retry_after <= answered_first + WINDOW - sent + 1
        assert assert_rate_limited(start(http, "retry")) <= retry_after
        time.sleep(retry_after)
        assert start(http, "retry").status_code == 201


def test_answers_are_limited_per_client_and_a_refused_one_is_not_stored(server: AppServer):
    with client(server.api) as candidate, client(server.api) as other:
        session = start(candidate, "answers").json()
        url, headers = f"/{session['session_id']}/transcript", auth(session["token"])
        for _ in range(ANSWER_LIMIT):
            response = candidate.post(url, json={"text": ANSWER}, headers=headers)
            assert response.status_code == 200, response.text
        assert_rate_limited(candidate.post(url, json={"text": ANSWER}, headers=headers))
        turns = candidate.get(url, headers=headers).json()["turns"]
        assert [t["role"] for t in turns].count("candidate") == ANSWER_LIMIT
        # The limit is the client's, not the session's.
        assert other.post(url, json={"text": ANSWER}, headers=headers).status_code == 200


def test_a_malformed_request_counts_too(server: AppServer):
    with client(server.api) as http:
        for _ in range(START_LIMIT):
            assert http.post("/start", json={"user_id": ""}).status_code == 422
        assert_rate_limited(http.post("/start", json={"user_id": "valid"}))


async def test_behind_a_proxy_that_appends_forwarded_a_forged_header_does_not_escape(
    tmp_path: Path,
):
    """As behind API Gateway: the proxy appends `Forwarded: for=<client>`; the client forges
    both headers, differently each time."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/spool.db",
        **LIMITED,
        "FORWARDED_ALLOW_IPS": "*",
        "TRUSTED_PROXY_HOPS": "1",
        "CLIENT_ADDRESS_HEADER": "forwarded",
    }
    app = AppServer(tmp_path / "server.log", env)
    app.start()
    try:
        async with http_proxy(app.base_url, forwarded_for=True) as proxy:
            api = f"{proxy}/api/interview"
            async with async_client(api) as flooder, async_client(api) as other:
                codes = []
                for i in range(START_LIMIT + 4):
                    forged = {
                        "Forwarded": f"for=198.51.100.{i}",
                        "X-Forwarded-For": f"203.0.113.{i}",
                    }
                    response = await flooder.post(
                        "/start", json={"user_id": "forger"}, headers=forged
                    )
                    codes.append(response.status_code)
                assert codes == [201] * START_LIMIT + [429] * 4
                response = await other.post("/start", json={"user_id": "other"})
                assert response.status_code == 201
    finally:
        app.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two instances on one PostgreSQL behind HAProxy, trusting it as the production stack
    trusts its proxies: every peer's X-Forwarded-For is read, and only its last entry, the one
    the proxy appended, is the client."""
    env = {
        **LIMITED,
        "FORWARDED_ALLOW_IPS": "*",
        "TRUSTED_PROXY_HOPS": "1",
        # Nothing but the test routes here: no load balancer to wait out when it stops.
        "DRAIN_MIN_SECONDS": "0.5",
    }
    with Cluster(tmp_path_factory.mktemp("limits-cluster"), size=2, env=env) as running:
        yield running


def test_the_limit_holds_across_instances_and_a_forged_x_forwarded_for_does_not_escape(
    cluster: Cluster,
):
    served_by: list[str] = []
    codes: list[int] = []
    with client(cluster.api) as flooder, client(cluster.api) as other:
        for i in range(START_LIMIT + 6):
            response = start(flooder, "cluster-flood", **{"X-Forwarded-For": f"198.51.100.{i}"})
            codes.append(response.status_code)
            served_by.append(response.headers[SERVED_BY])
            if response.status_code == 429:
                assert_rate_limited(response)
        assert codes == [201] * START_LIMIT + [429] * 6
        # Round robin: both instances counted into the one window.
        assert set(served_by[:START_LIMIT]) == {"node-1", "node-2"}
        assert set(served_by[START_LIMIT:]) == {"node-1", "node-2"}
        assert start(other, "cluster-other").status_code == 201
    assert cluster.database_url is not None
    with psycopg.connect(cluster.database_url) as db:
        row = db.execute(
            "SELECT count(*) FROM interview_sessions WHERE user_id = 'cluster-flood'"
        ).fetchone()
        assert row == (START_LIMIT,)
        keys = [k for (k,) in db.execute("SELECT key FROM interview_rate_limits").fetchall()]
    assert any("/127.0.0." in key for key in keys) and not any("198.51.100." in k for k in keys)


def test_a_limiter_that_cannot_count_lets_requests_through(cluster: Cluster):
    """The counters' table is gone (a broken database for the limiter alone): requests are
    served beyond the limit, and each instance logs why."""
    assert cluster.database_url is not None
    with psycopg.connect(cluster.database_url, autocommit=True) as db:
        db.execute("ALTER TABLE interview_rate_limits RENAME TO rate_limits_away")
        try:
            with client(cluster.api) as http:
                codes = [start(http, "fail-open").status_code for _ in range(START_LIMIT + 2)]
        finally:
            db.execute("ALTER TABLE rate_limits_away RENAME TO interview_rate_limits")
    assert codes == [201] * (START_LIMIT + 2)
    for name in cluster.names:
        lines = [json.loads(line) for line in cluster[name].log().splitlines() if line.strip()]
        assert any(line.get("event") == "rate_limit_unavailable" for line in lines), name


# -- the request body's read time --------------------------------------------------------------


START_HEAD = (
    b"POST /api/interview/start HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n"
)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket timeout: it never
    did)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def parse_response(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def test_a_stalled_body_gets_408_and_the_connection_is_closed(server: AppServer):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        began = time.monotonic()
        sock.sendall(START_HEAD + b'{"user_id": "sta')
        raw = read_until_closed(sock)
        took = time.monotonic() - began
    status, headers, body = parse_response(raw)
    assert status == 408
    assert body["error"]["code"] == "request_timeout"
    assert headers["connection"] == "close"
    assert 0.9 <= took < 3, took


def test_a_trickling_body_is_cut_at_the_same_time(server: AppServer):
    """A byte every 0.2 s keeps the connection busy but the body never arrives in time."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        began = time.monotonic()
        sock.sendall(START_HEAD)
        for byte in b'{"user_id": "' + b"t" * 80:
            if select.select([sock], [], [], 0.2)[0]:
                break  # the server has answered
            sock.sendall(bytes([byte]))
        raw = read_until_closed(sock)
        took = time.monotonic() - began
    status, _, body = parse_response(raw)
    assert (status, body["error"]["code"]) == (408, "request_timeout")
    assert 0.9 <= took < 3, took


def test_a_slow_body_that_arrives_in_time_is_served(server: AppServer):
    body = json.dumps({"user_id": "slow-but-fine"}).encode()
    head = START_HEAD.replace(b"Content-Length: 100", f"Content-Length: {len(body)}".encode())
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body[:5])
        time.sleep(0.5)
        sock.sendall(body[5:])
        status_line = sock.recv(65536).split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 201 ")


async def test_an_event_stream_outlives_the_body_timeout(server: AppServer):
    """/events has no body: the stream stays open long past REQUEST_BODY_TIMEOUT_SECONDS and
    still delivers what happens then."""
    async with async_client(server.api, timeout=30) as http:
        session = (await http.post("/start", json={"user_id": "streamer"})).json()
        headers = auth(session["token"])
        url = f"/{session['session_id']}/events"
        async with http.stream("GET", url, headers=headers) as stream:
            assert stream.status_code == 200
            events = read_events(stream)
            first = await anext(events)
            assert first.event == "status"
            await asyncio.sleep(2.5)
            ended = await http.post(f"/{session['session_id']}/end", headers=headers)
            assert ended.status_code == 200
            async for event in events:
                if event.event == "status" and event.data.get("status") == "ended":
                    break


def test_gradio_routes_are_not_timed(server: AppServer):
    """A stalled upload to the Gradio UI (outside /api/) is not answered 408 by the limit: what
    Gradio does with it is Gradio's."""
    deadline = time.monotonic() + 60
    while httpx.get(f"{server.base_url}/ui/", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the Gradio UI never came up"
        time.sleep(0.2)
    head = (
        b"POST /ui/gradio_api/upload HTTP/1.1\r\nHost: test\r\n"
        b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=2.5) as sock:
        sock.sendall(head + b"--x\r\n")
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            answer = b""  # still waiting for the body, as Gradio does without the limit
    assert not answer.startswith(b"HTTP/1.1 408"), answer[:200]


# -- open event streams per session ------------------------------------------------------------


async def test_a_session_holds_at_most_its_event_streams_and_a_closed_one_frees_its_slot(
    server: AppServer,
):
    async with async_client(server.api, timeout=30) as http:
        session = (await http.post("/start", json={"user_id": "streams"})).json()
        other = (await http.post("/start", json={"user_id": "streams-2"})).json()
        headers = auth(session["token"])
        url = f"/{session['session_id']}/events"
        async with OpenStreams() as streams:
            first = await streams.open(http, url, headers)
            await streams.open(http, url, headers)
            refused = await http.get(url, headers=headers, timeout=5)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "too_many_streams"
            assert 55 <= int(refused.headers["Retry-After"]) <= 60
            # Another session's streams are its own.
            await streams.open(http, f"/{other['session_id']}/events", auth(other["token"]))

            await first.aclose()  # the client closes one: its slot is free again
            await _open_when_free(streams, http, url, headers)

            # Full again: one more, cut abruptly (a TCP reset), frees its slot too.
            await streams.close_last()
            reset = _raw_stream(server, url, headers)
            await _open_when_free_after(reset, streams, http, url, headers)


class OpenStreams:
    """Open event-stream responses, closed at the end."""

    def __init__(self) -> None:
        self.responses: list[httpx.Response] = []

    async def __aenter__(self) -> OpenStreams:
        return self

    async def __aexit__(self, *_: object) -> None:
        for response in self.responses:
            await response.aclose()

    async def open(
        self, http: httpx.AsyncClient, url: str, headers: dict[str, str]
    ) -> httpx.Response:
        response = await http.send(http.build_request("GET", url, headers=headers), stream=True)
        assert response.status_code == 200, await response.aread()
        self.responses.append(response)
        return response

    async def close_last(self) -> None:
        await self.responses.pop().aclose()


async def _open_when_free(
    streams: OpenStreams, http: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> None:
    """A new stream gets its slot within a few seconds of one closing."""
    deadline = time.monotonic() + 5
    while True:
        request = http.build_request("GET", url, headers=headers)
        response = await http.send(request, stream=True)
        if response.status_code == 200:
            streams.responses.append(response)
            return
        await response.aclose()
        assert response.status_code == 429
        assert time.monotonic() < deadline, "the closed stream's slot was never freed"
        await asyncio.sleep(0.1)


def _raw_stream(server: AppServer, url: str, headers: dict[str, str]) -> socket.socket:
    """A stream on a socket of our own, open once its 200 has come."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    lines = [f"GET /api/interview{url} HTTP/1.1", "Host: test"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    return sock


async def _open_when_free_after(
    sock: socket.socket,
    streams: OpenStreams,
    http: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
) -> None:
    refused = await http.get(url, headers=headers, timeout=5)
    assert refused.status_code == 429  # the raw stream holds the last slot
    # SO_LINGER with a zero timeout: close() sends a reset, not a polite FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    await _open_when_free(streams, http, url, headers)
