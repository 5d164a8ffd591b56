"""Request body limits and request logs, over a real server."""

import json
import socket

import httpx

from tests.support.app_server import AppServer


def test_declared_oversized_body_is_refused(api: httpx.Client):
    body = b'{"user_id": "' + b"x" * 70_000 + b'"}'
    response = api.post("/start", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "content_too_large"


def test_chunked_oversized_body_is_refused(api: httpx.Client):
    def chunks():
        yield b'{"user_id": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}'

    response = api.post("/start", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "content_too_large"


def test_small_chunked_body_is_accepted(api: httpx.Client):
    def chunks():
        yield b'{"user_id": '
        yield b'"chunked"}'

    response = api.post("/start", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 201


def test_invalid_content_length_is_a_400(api_server: AppServer):
    request = (
        b"POST /api/interview/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: lots\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", api_server.port), timeout=5) as sock:
        sock.sendall(request)
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400")


def test_requests_are_logged_with_their_session_id(api: httpx.Client, api_server: AppServer):
    session = api.post("/start", json={"user_id": "logged"}).json()
    sid = session["session_id"]
    api.get(f"/{sid}/status", headers={"Authorization": f"Bearer {session['token']}"})
    events = [json.loads(line) for line in api_server.log().splitlines() if line.strip()]
    requests = [e for e in events if e["event"] == "request"]
    [status_line] = [e for e in requests if e["path"] == f"/api/interview/{sid}/status"]
    assert status_line["session_id"] == sid and status_line["status"] == 200
    assert status_line["method"] == "GET" and status_line["duration_ms"] >= 0
