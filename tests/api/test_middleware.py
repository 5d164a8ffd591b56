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


def test_oversized_headers_are_a_json_431(api: httpx.Client):
    # The HTTP parser sets no limit: one huge header, or very many small ones.
    for headers in ({"X-Big": "x" * 40_000}, {f"X-H{i}": "y" * 20 for i in range(1500)}):
        response = api.get("/plans", headers=headers)
        assert response.status_code == 431
        assert response.json()["error"]["code"] == "request_header_fields_too_large"
    # Headers of an ordinary size still pass (a big cookie included).
    assert api.get("/plans", headers={"Cookie": "c=" + "z" * 8000}).status_code == 200


def test_a_refused_cors_preflight_is_a_json_error(api: httpx.Client):
    preflight = {"Access-Control-Request-Method": "POST"}
    refused = api.options("/start", headers={"Origin": "https://elsewhere.example", **preflight})
    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "code": "cors_refused",
        "message": "Disallowed CORS origin.",
        "details": [],
    }
    allowed = api.options("/start", headers={"Origin": "http://localhost:5173", **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:5173"
