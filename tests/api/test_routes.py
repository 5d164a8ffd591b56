"""The REST API over a real uvicorn server on 127.0.0.1, on SQLite and PostgreSQL."""

import json
import subprocess
from datetime import datetime, timedelta

import httpx
import pytest
from fastapi.routing import APIRoute

from app import create_app
from harness.app_server import AppServer
from interview.api.routes import FIXED_PATHS, router
from interview.config import Settings
from tests.api.helpers import auth, start, wait_for_results

LONG = "I led the migration of our orders service to PostgreSQL and wrote the runbook for it."


def test_seed_curl_for_start_works_as_written(api_server: AppServer):
    out = subprocess.run(
        [
            "curl", "-s", "-w", "\n%{http_code}", "-X", "POST", f"{api_server.api}/start",
            "-H", "Content-Type: application/json", "-d", '{"user_id": "test-user"}',
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    body, code = out.rsplit("\n", 1)
    assert code == "201"
    data = json.loads(body)
    assert data["status"] == "created"
    assert data["plan_id"] == "backend-engineer-screen"
    assert set(data) == {"session_id", "token", "status", "plan_id", "created_at", "expires_at"}


def test_full_text_interview_over_http(api: httpx.Client):
    session = start(api, plan_id="customer-support-screen", candidate_name="Ada")
    sid, headers = session["session_id"], auth(session["token"])

    transcript = api.get(f"/{sid}/transcript", headers=headers).json()
    assert [t["role"] for t in transcript["turns"]] == ["interviewer"]
    first_question = transcript["turns"][0]["text"]

    replies = []
    for _ in range(20):
        response = api.post(f"/{sid}/transcript", json={"text": LONG}, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["candidate_turn"]["source"] == "text"
        replies.append(body["interviewer_turn"])
        if body["interview_complete"]:
            break
    assert body["status"] == "ended"
    assert [r["kind"] for r in replies] == ["question"] * 3 + ["close"]
    assert [r["question_index"] for r in replies] == [1, 2, 3, 3]

    status = api.get(f"/{sid}/status", headers=headers).json()
    assert status["status"] == "ended" and status["end_reason"] == "plan_finished"
    assert (status["turn_count"], status["question_count"]) == (9, 4)

    ended = api.post(f"/{sid}/end", headers=headers)  # idempotent after the plan finished
    assert ended.status_code == 200 and ended.json()["end_reason"] == "plan_finished"

    results = wait_for_results(api, session)
    assert results.status_code == 200, results.text
    report = results.json()
    assert report["status"] == "ready" and report["candidate_name"] == "Ada"
    assert report["plan"]["id"] == "customer-support-screen"
    assert report["metrics"]["questions_covered"] == 4
    assert report["metrics"]["answer_words"] == 4 * len(LONG.split())
    assert report["questions"][0]["answers"][0]["text"] == LONG
    assert first_question.endswith(report["questions"][0]["text"])

    closed = api.post(f"/{sid}/transcript", json={"text": LONG}, headers=headers)
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "session_closed"


SESSION_ROUTES = [
    ("GET", "status"),
    ("GET", "ice-servers"),
    ("GET", "transcript"),
    ("POST", "transcript"),
    ("POST", "end"),
    ("GET", "results"),
]


@pytest.mark.parametrize(("method", "route"), SESSION_ROUTES)
def test_session_routes_refuse_without_the_right_token(api: httpx.Client, method: str, route: str):
    mine, other = start(api), start(api)
    url = f"/{mine['session_id']}/{route}"
    body = {"text": LONG} if method == "POST" else None

    missing = api.request(method, url, json=body)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    basic = api.request(method, url, json=body, headers={"Authorization": "Basic dTpw"})
    assert basic.status_code == 401

    wrong = api.request(method, url, json=body, headers=auth(other["token"]))
    unknown = api.request(
        method, f"/AAAAAAAAAAAAAAAAAAAAAAAA/{route}", json=body, headers=auth(mine["token"])
    )
    assert wrong.status_code == unknown.status_code == 404
    assert wrong.json() == unknown.json()
    assert wrong.json()["error"]["code"] == "session_not_found"

    # Nothing was changed by the refused calls.
    status = api.get(f"/{mine['session_id']}/status", headers=auth(mine["token"])).json()
    assert (status["status"], status["turn_count"]) == ("created", 1)


def test_status_reports_progress(api: httpx.Client):
    session = start(api)
    sid, headers = session["session_id"], auth(session["token"])
    status = api.get(f"/{sid}/status", headers=headers).json()
    assert status["status"] == "created" and status["started_at"] is None
    assert (status["question_index"], status["question_count"], status["turn_count"]) == (0, 5, 1)
    assert status["connection_state"] == "none" and status["elapsed_seconds"] == 0
    api.post(f"/{sid}/transcript", json={"text": LONG}, headers=headers)
    status = api.get(f"/{sid}/status", headers=headers).json()
    assert status["status"] == "active" and status["started_at"] is not None
    assert (status["question_index"], status["turn_count"]) == (1, 3)


def test_answer_validation(api: httpx.Client):
    session = start(api)
    sid, headers = session["session_id"], auth(session["token"])
    limit = Settings.model_fields["max_answer_chars"].default  # the server runs the default
    cases = [
        ({"text": "   "}, 422, "invalid_answer", "empty"),
        ({"text": "\u200b\ufeff\u2060"}, 422, "invalid_answer", "visible"),
        ({"text": ""}, 422, "invalid_request", "at least 1"),
        ({"text": "x" * (limit + 1)}, 422, "invalid_request", str(limit)),
        ({"text": 5}, 422, "invalid_request", "string"),
        ({}, 422, "invalid_request", "required"),
        ([1, 2], 422, "invalid_request", ""),
    ]
    for body, code, error_code, words in cases:
        response = api.post(f"/{sid}/transcript", json=body, headers=headers)
        assert response.status_code == code, (body, response.text)
        error = response.json()["error"]
        assert error["code"] == error_code
        assert words in json.dumps(error)
    malformed = api.post(
        f"/{sid}/transcript",
        content=b'{"text": "unterminated',
        headers={**headers, "Content-Type": "application/json"},
    )
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "malformed_json"
    transcript = api.get(f"/{sid}/transcript", headers=headers).json()
    assert len(transcript["turns"]) == 1


def test_an_answer_sent_twice_with_one_idempotency_key_is_stored_once(api: httpx.Client):
    session = start(api)
    sid, headers = session["session_id"], auth(session["token"])
    keyed = {**headers, "Idempotency-Key": "8d1e6f0c-answer-1"}
    first = api.post(f"/{sid}/transcript", json={"text": LONG}, headers=keyed)
    again = api.post(f"/{sid}/transcript", json={"text": LONG}, headers=keyed)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    other_words = api.post(f"/{sid}/transcript", json={"text": "Another answer."}, headers=keyed)
    assert other_words.status_code == 422
    assert other_words.json()["error"]["code"] == "idempotency_key_reused"
    for bad in (b"has space", b"x" * 256, "é".encode()):
        raw_headers = [
            (b"Authorization", headers["Authorization"].encode()),
            (b"Idempotency-Key", bad),
        ]
        refused = api.post(f"/{sid}/transcript", json={"text": LONG}, headers=raw_headers)
        assert refused.status_code == 422, bad
        assert refused.json()["error"]["code"] == "invalid_request"
    turns = api.get(f"/{sid}/transcript", headers=headers).json()["turns"]
    assert [t["role"] for t in turns] == ["interviewer", "candidate", "interviewer"]
    # Without a key an answer works as it always did: each request is a new answer.
    for _ in range(2):
        assert api.post(f"/{sid}/transcript", json={"text": LONG}, headers=headers).is_success
    assert len(api.get(f"/{sid}/transcript", headers=headers).json()["turns"]) == 7


def test_start_validation_and_plans(api: httpx.Client):
    plans = api.get("/plans").json()
    ids = [p["id"] for p in plans["plans"]]
    assert {"backend-engineer-screen", "customer-support-screen"} <= set(ids)
    assert plans["default_plan_id"] == "backend-engineer-screen"

    unknown = api.post("/start", json={"user_id": "u", "plan_id": "astronaut"})
    assert unknown.status_code == 422
    message = unknown.json()["error"]["message"]
    assert "astronaut" in message and all(i in message for i in ids)

    for body in ({}, {"user_id": 7}, {"user_id": ""}, {"user_id": "u", "metadata": "x"}):
        response = api.post("/start", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"]["details"]

    chosen = start(api, plan_id="customer-support-screen", metadata={"req": "R-1"})
    assert chosen["plan_id"] == "customer-support-screen"


def test_a_session_keeps_its_chosen_voice(api: httpx.Client):
    chosen = start(api, plan_id="customer-support-screen", voice="bm_george")
    status = api.get(f"/{chosen['session_id']}/status", headers=auth(chosen["token"])).json()
    assert status["voice"] == "bm_george"
    plain = start(api, plan_id="customer-support-screen")
    status = api.get(f"/{plain['session_id']}/status", headers=auth(plain["token"])).json()
    assert status["voice"] == "af_sarah"  # the plan's

    # These servers run without voice: only the name's form is checked, before the database.
    for voice in ("Bm_george", "bm-george", "bm_", "bm_george\n", "x" * 65, 7, ""):
        response = api.post("/start", json={"user_id": "u", "voice": voice})
        assert response.status_code == 422, voice
        error = response.json()["error"]
        assert error["code"] == "invalid_request"
        assert [d["field"] for d in error["details"]] == ["voice"]
    assert start(api, voice=None)["status"] == "created"


@pytest.mark.models
async def test_an_unknown_voice_is_refused_with_the_valid_ones(tmp_path):
    # In process, with the real speech engines loaded (their voices are the valid ones).
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/spool.db", voice_enabled=True))
    runtime = app.state.runtime
    await runtime.store.migrate()
    await runtime.speech.load()
    voices = runtime.speech.voices()
    assert voices is not None and "bf_emma" in voices and voices == sorted(voices)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/interview") as c:
            refused = await c.post("/start", json={"user_id": "u", "voice": "zz_unheard"})
            assert refused.status_code == 422
            error = refused.json()["error"]
            assert error["code"] == "unknown_voice"
            assert error["message"] == (
                f"Unknown voice 'zz_unheard'; valid voices: {', '.join(voices)}."
            )
            assert error["details"] == [{"field": "voice", "message": error["message"]}]
            accepted = await c.post("/start", json={"user_id": "u", "voice": "bf_emma"})
            assert accepted.status_code == 201, accepted.text
    finally:
        runtime.speech.shutdown()
        await runtime.store.dispose()


def test_results_wait_for_the_end(api: httpx.Client):
    session = start(api)
    sid, headers = session["session_id"], auth(session["token"])
    running = api.get(f"/{sid}/results", headers=headers)
    assert running.status_code == 409
    assert running.json()["error"]["code"] == "interview_running"
    api.post(f"/{sid}/transcript", json={"text": LONG}, headers=headers)
    ended = api.post(f"/{sid}/end", headers=headers).json()
    assert (ended["status"], ended["end_reason"]) == ("ended", "candidate")
    report = wait_for_results(api, session)
    assert report.status_code == 200
    assert report.json()["metrics"]["questions_covered"] == 1
    assert report.json()["questions"][1]["asked"] is True
    assert report.json()["questions"][2]["asked"] is False


def test_ice_servers_without_turn_is_an_empty_list(api: httpx.Client):
    session = start(api)
    response = api.get(f"/{session['session_id']}/ice-servers", headers=auth(session["token"]))
    assert response.status_code == 200
    assert response.json() == {"iceServers": [], "ttl": 0}
    assert response.headers["cache-control"] == "no-store"


def test_unstorable_values_are_refused_alike_on_every_backend(api: httpx.Client):
    for body in (
        {"user_id": "x\u0000y"},
        {"user_id": "x", "candidate_name": "a\u0000"},
        {"user_id": "x", "metadata": {"note": "a\u0000b"}},
    ):
        response = api.post("/start", json=body)
        assert response.status_code == 422, response.text
        assert "NUL" in json.dumps(response.json())
    for raw in (
        b'{"user_id": "x", "metadata": {"a": NaN}}',
        b'{"user_id": "x", "metadata": {"a": 1e999}}',
    ):
        response = api.post("/start", content=raw, headers={"Content-Type": "application/json"})
        assert response.status_code in (400, 422), response.text
        assert "error" in response.json()
    session = start(api)
    sid, headers = session["session_id"], auth(session["token"])
    response = api.post(f"/{sid}/transcript", json={"text": "my answer\u0000"}, headers=headers)
    assert response.status_code == 422
    assert len(api.get(f"/{sid}/transcript", headers=headers).json()["turns"]) == 1


@pytest.mark.parametrize(
    ("odd_id", "status"),
    [("%00", 422), ("a%20b", 422), ("x" * 65, 422), ("%C3%A9", 422), ("..%2F..", 404)],
)
def test_odd_session_ids_are_refused_before_the_database(
    api: httpx.Client, odd_id: str, status: int
):
    # The id's published pattern is checked first (422); a path of other segments is no route.
    session = start(api)
    response = api.get(f"/{odd_id}/status", headers=auth(session["token"]))
    assert response.status_code == status
    assert response.json()["error"]["code"] == {422: "invalid_request", 404: "not_found"}[status]


def test_no_relay_credentials_after_the_end(api: httpx.Client):
    session = start(api)
    sid, headers = session["session_id"], auth(session["token"])
    api.post(f"/{sid}/end", headers=headers)
    response = api.get(f"/{sid}/ice-servers", headers=headers)
    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "session_closed",
        "message": "The interview has ended.",
        "details": [],
    }


async def test_an_expired_session_has_its_own_error_code(tmp_path):
    # In process, with the service's clock moved past the session's time limit.
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/spool.db", voice_enabled=False))
    runtime = app.state.runtime
    await runtime.store.migrate()
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/interview") as c:
            started = await c.post("/start", json={"user_id": "u"})
            sid, headers = started.json()["session_id"], auth(started.json()["token"])
            later = datetime.fromisoformat(started.json()["expires_at"]) + timedelta(seconds=1)
            runtime.service.clock = lambda: later
            # Expired on an answer, then refused alike on every route that needs an open session.
            for method, route, body in (
                ("POST", "transcript", {"text": LONG}),
                ("POST", "transcript", {"text": LONG}),
                ("GET", "ice-servers", None),
            ):
                response = await c.request(method, f"/{sid}/{route}", json=body, headers=headers)
                assert response.status_code == 409, response.text
                assert response.json()["error"] == {
                    "code": "session_expired",
                    "message": "The interview has expired.",
                    "details": [],
                }
            status = (await c.get(f"/{sid}/status", headers=headers)).json()
            assert (status["status"], status["end_reason"]) == ("expired", "timeout")
    finally:
        await runtime.store.dispose()


def test_health(api: httpx.Client):
    assert api.head("/health").status_code == 200
    response = api.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == {"ok": True, "detail": "reachable"}
    assert "not configured" in body["checks"]["turn"]["detail"]


def test_unknown_routes_and_methods_get_json_errors(api: httpx.Client):
    missing = api.get("/no/such/route")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong_method = api.put("/start")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    # DELETE /start is no session's path either: "start" is a route of its own.
    assert api.delete("/start").json()["error"]["code"] == "method_not_allowed"
    form = api.post("/start", content=b"user_id=x", headers={"Content-Type": "text/plain"})
    assert form.status_code == 422 and "error" in form.json()


def test_openapi_is_the_contract(api_server: AppServer):
    spec = httpx.get(f"{api_server.base_url}/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/api/interview/health",
        "/api/interview/start",
        "/api/interview/plans",
        "/api/interview/{session_id}/status",
        "/api/interview/{session_id}/ice-servers",
        "/api/interview/{session_id}/transcript",
        "/api/interview/{session_id}/end",
        "/api/interview/{session_id}/results",
    ):
        assert path in paths
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert "StartRequest" in spec["components"]["schemas"]
    assert httpx.get(f"{api_server.base_url}/docs").status_code == 200


def test_cors_allows_localhost_in_development_only(api: httpx.Client):
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    ok = api.options("/start", headers={"Origin": "http://localhost:5173", **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "http://localhost:5173"
    evil = api.options("/start", headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in evil.headers


def test_production_cors_allows_only_configured_origins(tmp_path):
    server = AppServer(
        tmp_path / "server.log",
        {
            "DATABASE_URL": f"sqlite:///{tmp_path}/spool.db",
            "ENVIRONMENT": "production",
            "CORS_ORIGINS": "https://hiring.example",
        },
    )
    server.start()
    try:
        preflight = {"Access-Control-Request-Method": "POST"}
        for origin, allowed in (("https://hiring.example", True), ("http://localhost:3000", False)):
            response = httpx.options(f"{server.api}/start", headers={"Origin": origin, **preflight})
            assert (response.headers.get("access-control-allow-origin") == origin) is allowed
    finally:
        server.stop()


def test_logs_are_json_with_session_ids_and_no_tokens(api: httpx.Client, api_server: AppServer):
    session = start(api)
    headers = auth(session["token"])
    api.post(f"/{session['session_id']}/transcript", json={"text": LONG}, headers=headers)
    log = api_server.log()
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert any(
        e.get("event") == "turn_committed" and e.get("session_id") == session["session_id"]
        for e in lines
    )
    assert session["token"] not in log
    assert LONG not in log  # candidates' words stay in the database, not in logs


def test_the_session_path_excludes_exactly_the_fixed_one_word_routes():
    one_word = {
        route.path.removeprefix("/")
        for route in router.routes
        if isinstance(route, APIRoute) and route.path.count("/") == 1 and "{" not in route.path
    }
    assert set(FIXED_PATHS) == one_word
