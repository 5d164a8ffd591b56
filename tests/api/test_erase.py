"""DELETE /{id} over a real server, on SQLite and PostgreSQL: the candidate's token erases the
interview (checked in the database), nothing else does, and afterwards the session is 404."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import httpx

from harness.app_server import AppServer
from interview.config import to_async_database_url
from interview.store import Store
from tests.api.helpers import auth, start
from tests.store.test_erasure import full_interview, rows_of

ANSWER = "I ran the payments team's on-call rotation and rewrote its alerting from scratch."


def rows(server: AppServer, session_id: str) -> dict[str, int]:
    """The session's rows in every table of the server's database, read beside the server."""

    async def count() -> dict[str, int]:
        store = Store(to_async_database_url(server.env["DATABASE_URL"]))
        try:
            return await rows_of(store, session_id)
        finally:
            await store.dispose()

    return asyncio.run(count())


def answered(api: httpx.Client) -> tuple[str, dict[str, str]]:
    session = start(api, candidate_name="Ada Lovelace")
    sid, headers = session["session_id"], auth(session["token"])
    response = api.post(f"/{sid}/transcript", json={"text": ANSWER}, headers=headers)
    assert response.status_code == 200, response.text
    return sid, headers


def assert_gone(api: httpx.Client, server: AppServer, sid: str, headers: dict[str, str]) -> None:
    for method, path in (
        ("GET", "status"),
        ("GET", "transcript"),
        ("GET", "results"),
        ("GET", "events"),
        ("POST", "end"),
    ):
        response = api.request(method, f"/{sid}/{path}", headers=headers)
        assert response.status_code == 404, (path, response.text)
        assert response.json()["error"]["code"] == "session_not_found"
    # A retry of the erasure: the interview is gone either way.
    assert api.delete(f"/{sid}", headers=headers).status_code == 404
    assert set(rows(server, sid).values()) == {0}


def test_the_token_erases_a_live_interview_then_it_is_404(api: httpx.Client, api_server: AppServer):
    sid, headers = answered(api)
    other, other_headers = answered(api)
    assert rows(api_server, sid)["interview_turns.session_id"] == 3

    response = api.delete(f"/{sid}", headers=headers)
    assert response.status_code == 204 and response.content == b""

    assert_gone(api, api_server, sid, headers)
    # Another interview is untouched.
    status = api.get(f"/{other}/status", headers=other_headers)
    assert status.status_code == 200 and status.json()["status"] == "active"
    assert rows(api_server, other)["interview_turns.session_id"] == 3
    # The service logs what happened to the interview, never the candidate's words or name.
    assert ANSWER not in api_server.log() and "Ada Lovelace" not in api_server.log()


def test_erasing_right_after_the_end_leaves_no_report_behind(
    api: httpx.Client, api_server: AppServer
):
    sid, headers = answered(api)
    assert api.post(f"/{sid}/end", headers=headers).status_code == 200
    # At once: the report is being written (or about to be).
    assert api.delete(f"/{sid}", headers=headers).status_code == 204
    # Whatever the report writer does next, it stores nothing (it takes milliseconds offline).
    time.sleep(1.0)
    assert_gone(api, api_server, sid, headers)


def test_only_the_session_s_token_erases_it(api: httpx.Client, api_server: AppServer):
    sid, headers = answered(api)
    other = start(api)

    missing = api.delete(f"/{sid}")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthorized"
    for wrong in (auth("not-the-token"), auth(other["token"])):
        response = api.delete(f"/{sid}", headers=wrong)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "session_not_found"
    assert api.delete("/no-such-session", headers=headers).status_code == 404
    # An id of the wrong form never reaches the database.
    malformed = api.delete("/not%20a%20session%20id", headers=headers)
    assert malformed.status_code == 422 and malformed.json()["error"]["code"] == "invalid_request"

    # Still all there, and the right token still works.
    assert api.get(f"/{sid}/status", headers=headers).status_code == 200
    assert rows(api_server, sid)["interview_turns.session_id"] == 3


def test_browsers_may_send_delete_cross_origin(api: httpx.Client):
    origin = "http://localhost:5173"  # a development origin (the server runs in development)
    preflight = api.options(
        "/some-session",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "DELETE",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 200
    assert "DELETE" in preflight.headers["access-control-allow-methods"]
    assert preflight.headers["access-control-allow-origin"] == origin


def test_the_contract_documents_every_answer_of_delete(api_server: AppServer):
    spec = httpx.get(f"{api_server.base_url}/openapi.json").json()
    operation = spec["paths"]["/api/interview/{session_id}"]["delete"]
    assert {"204", "401", "404", "503"} <= set(operation["responses"])
    assert "content" not in operation["responses"]["204"]
    assert operation["security"]


def test_a_server_sweeps_interviews_past_the_retention_period(tmp_path):
    """Each instance runs the retention sweep with its upkeep: a server started on a database
    holding an interview that ended 100 days ago erases it, and keeps one 30 days old."""
    url = f"sqlite:///{tmp_path}/spool.db"

    async def seed() -> None:
        store = Store(to_async_database_url(url))
        try:
            await store.migrate()
            now = datetime.now(UTC)
            await full_interview(store, "old", ended_at=now - timedelta(days=100))
            await full_interview(store, "recent", ended_at=now - timedelta(days=30))
        finally:
            await store.dispose()

    asyncio.run(seed())
    server = AppServer(tmp_path / "server.log", {"DATABASE_URL": url, "DATA_RETENTION_DAYS": "90"})
    server.start()
    try:
        deadline = time.monotonic() + 10
        while rows(server, "old")["interview_sessions.id"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert set(rows(server, "old").values()) == {0}
        assert all(rows(server, "recent").values())
    finally:
        server.stop()
    assert '"event": "interviews_purged"' in server.log()
    purged = [line for line in server.log().splitlines() if "interviews_purged" in line]
    assert json.loads(purged[0])["count"] == 1
    assert "my answer" not in server.log()  # counts are logged, never what was said
