"""Small HTTP helpers shared by the API tests."""

from __future__ import annotations

import time
from typing import Any

import httpx


def start(api: httpx.Client, **body: Any) -> dict[str, Any]:
    response = api.post("/start", json={"user_id": "test-user", **body})
    assert response.status_code == 201, response.text
    return response.json()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for_results(
    api: httpx.Client, session: dict[str, Any], timeout: float = 10
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/{session['session_id']}/results", headers=auth(session["token"]))
        if response.status_code != 202 or time.monotonic() > deadline:
            return response
        assert response.json() == {"status": "pending", "reason": None}
        time.sleep(0.05)
