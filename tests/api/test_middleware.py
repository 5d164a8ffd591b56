"""Request body limits and request logs, over a real server."""

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


def test_every_request_is_logged_once(api: httpx.Client, api_server: AppServer):
    api.get("/health", params={"probe": "logged-once"})
    lines = [line for line in api_server.log().splitlines() if '"event": "request"' in line]
    assert lines and all('"method"' in line and '"status"' in line for line in lines)
