"""Request body limits and request logs, over a real server."""

import json
import time

import httpx

from harness.app_server import AppServer


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


def test_requests_are_logged_with_their_session_id(api: httpx.Client, api_server: AppServer):
    session = api.post("/start", json={"user_id": "logged"}).json()
    sid = session["session_id"]
    api.get(f"/{sid}/status", headers={"Authorization": f"Bearer {session['token']}"})
    # The line is written once the response has gone out, so it may land a moment later.
    deadline = time.monotonic() + 5
    while True:
        events = [json.loads(line) for line in api_server.log().splitlines() if line.strip()]
        path = f"/api/interview/{sid}/status"
        matches = [e for e in events if e["event"] == "request" and e["path"] == path]
        if matches or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    [status_line] = matches
    assert status_line["session_id"] == sid and status_line["status"] == 200
    assert status_line["method"] == "GET" and status_line["duration_ms"] >= 0
