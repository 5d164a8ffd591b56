"""A real server process killed mid-interview and started again loses nothing committed."""

from pathlib import Path

import httpx

from harness.app_server import AppServer
from tests.api.helpers import auth, wait_for_results

ANSWER = "I split the monolith's billing code into a service with its own database and queue."


def test_sigkill_mid_interview_keeps_every_committed_turn(database_url: str, tmp_path: Path):
    env = {"DATABASE_URL": database_url}
    first = AppServer(tmp_path / "first.log", env)
    first.start()
    try:
        with httpx.Client(base_url=first.api, timeout=10) as api:
            session = api.post("/start", json={"user_id": "crash-test"}).json()
            sid, headers = session["session_id"], auth(session["token"])
            for i in range(2):
                reply = api.post(
                    f"/{sid}/transcript", json={"text": f"{ANSWER} {i}"}, headers=headers
                )
                assert reply.status_code == 200
            before_status = api.get(f"/{sid}/status", headers=headers).json()
            before_turns = api.get(f"/{sid}/transcript", headers=headers).json()["turns"]
    finally:
        first.kill()  # SIGKILL: no shutdown code runs

    second = AppServer(tmp_path / "second.log", env)
    second.start()
    try:
        with httpx.Client(base_url=second.api, timeout=10) as api:
            status = api.get(f"/{sid}/status", headers=headers)
            assert status.status_code == 200  # the same token still opens the session
            after_status = status.json()
            for key in ("status", "question_index", "turn_count", "created_at", "started_at"):
                assert after_status[key] == before_status[key]
            after_turns = api.get(f"/{sid}/transcript", headers=headers).json()["turns"]
            assert after_turns == before_turns
            assert len(after_turns) == 5

            assert api.get(f"/{sid}/status", headers=auth("forged")).status_code == 404
            # The interview resumes where it was.
            reply = api.post(f"/{sid}/transcript", json={"text": ANSWER}, headers=headers).json()
            assert reply["candidate_turn"]["index"] == 5
            assert reply["interviewer_turn"]["question_index"] == 3
            assert api.post(f"/{sid}/end", headers=headers).status_code == 200
            report = wait_for_results(api, session).json()
            assert report["metrics"]["candidate_turns"] == 3
    finally:
        second.stop()


def test_a_report_pending_at_a_crash_is_finished_after_restart(database_url: str, tmp_path: Path):
    env = {"DATABASE_URL": database_url}
    first = AppServer(tmp_path / "first.log", env)
    first.start()
    try:
        with httpx.Client(base_url=first.api, timeout=10) as api:
            session = api.post("/start", json={"user_id": "u"}).json()
            headers = auth(session["token"])
            api.post(f"/{session['session_id']}/transcript", json={"text": ANSWER}, headers=headers)
            assert api.post(f"/{session['session_id']}/end", headers=headers).status_code == 200
    finally:
        first.kill()
    second = AppServer(tmp_path / "second.log", env)
    second.start()
    try:
        with httpx.Client(base_url=second.api, timeout=10) as api:
            report = wait_for_results(api, session)
            assert report.status_code == 200
            assert report.json()["questions"][0]["answers"][0]["text"] == ANSWER
    finally:
        second.stop()


def test_unreachable_database_is_a_503_not_a_crash(tmp_path: Path):
    from harness.ports import free_port

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    server = AppServer(tmp_path / "server.log", {"DATABASE_URL": url})
    server.start(expect_healthy=False)
    try:
        health = httpx.get(f"{server.api}/health", timeout=10)
        assert health.status_code == 503
        checks = health.json()["checks"]
        assert checks["database"]["ok"] is False and checks["schema"]["detail"] == "initializing"
        started = httpx.post(f"{server.api}/start", json={"user_id": "u"}, timeout=10)
        assert started.status_code == 503
        assert started.json()["error"]["code"] == "database_unavailable"
        assert started.headers["retry-after"] == "5"
        token = "tok-" + "s3cr3t" * 6
        status = httpx.get(
            f"{server.api}/AAAAAAAAAAAAAAAAAAAAAAAA/status",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert status.status_code == 503
    finally:
        server.stop()
    log = server.log()
    assert "database_error" in log  # the failure was logged, with its traceback...
    assert token not in log  # ...but never the caller's token
