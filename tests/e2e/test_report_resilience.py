"""A report always arrives, over HTTP: with a model server that fails in every way it can
(errors, 429, garbage bodies, stalls, broken tool calls) each interview gets a ready report with
its answers and the reason there is no evaluation yet; once the model is back, the background
retry (or an operator's request) fills the evaluation in and a `results` event says so. The real
service in a subprocess, on SQLite and PostgreSQL, the real `openai` client, a local
OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness import interview_model
from harness.app_server import AppServer
from harness.fake_openai import FakeOpenAI, Rotation, hostile
from harness.sse import read_events
from interview.report.evaluation_prompt import TOOL_NAME
from tests.api.helpers import auth
from tests.conftest import BACKENDS, _database_url
from tests.e2e.conftest import PLANS

TIMEOUT_SECONDS = 1.0
# Longer than the timeout: the hangs and stalls of the hostile model are cut by it.
STALL_SECONDS = 1.5
ANSWERS = [
    "I rebuilt our invoicing pipeline around an outbox table and idempotent consumers.",
    "I moved the search service to a new cluster without an hour of downtime.",
    "I found a leak in our websocket gateway by bisecting heap profiles across releases.",
]


def service_env(
    fake: FakeOpenAI, request: pytest.FixtureRequest, directory: Path, retries: int
) -> dict[str, str]:
    return {
        **fake.env(),
        "DATABASE_URL": _database_url(request.param, request, str(directory)),
        "PLANS_DIR": str(PLANS),
        "DEFAULT_PLAN_ID": "quick-engineer",
        "INTERVIEWER": "scripted",  # the model is asked for evaluations only
        "REPORT_EVALUATION": "true",
        "EVALUATION_MAX_ATTEMPTS": "2",
        "EVALUATION_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
        "EVALUATION_RETRY_ATTEMPTS": str(retries),
        "EVALUATION_RETRY_SECONDS": "0.5",
        "EVENTS_STREAM_SECONDS": "60",
    }


@pytest.fixture(scope="module", params=BACKENDS)
def retrying_server(
    request: pytest.FixtureRequest, tmp_path_factory, fake_openai_server: FakeOpenAI
) -> Iterator[AppServer]:
    """Evaluations retried in the background: 6 attempts, 0.5 s then doubling (~30 s)."""
    directory = tmp_path_factory.mktemp(f"retrying-{request.param}")
    server = AppServer(
        directory / "server.log", service_env(fake_openai_server, request, directory, retries=6)
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def operator_server(
    request: pytest.FixtureRequest, tmp_path_factory, fake_openai_server: FakeOpenAI
) -> Iterator[AppServer]:
    """No background attempt: a failed evaluation waits for an operator's request."""
    directory = tmp_path_factory.mktemp(f"operator-{request.param}")
    server = AppServer(
        directory / "server.log", service_env(fake_openai_server, request, directory, retries=0)
    )
    server.start()
    yield server
    server.stop()


def interview(api: httpx.Client, answer: str | None) -> tuple[str, dict[str, str]]:
    body = api.post("/start", json={"user_id": "resilience", "candidate_name": "Ana"}).json()
    sid, headers = body["session_id"], auth(body["token"])
    if answer is not None:
        response = api.post(f"/{sid}/transcript", json={"text": answer}, headers=headers)
        assert response.status_code == 200, response.text
    assert api.post(f"/{sid}/end", headers=headers).status_code == 200
    return sid, headers


def report(api: httpx.Client, sid: str, headers: dict[str, str], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = api.get(f"/{sid}/results", headers=headers)
        if response.status_code == 200:
            return response.json()
        assert response.status_code == 202, response.text
        time.sleep(0.2)
    raise AssertionError("no report in time")


def results_event_id(server: AppServer, sid: str, headers: dict[str, str]) -> int:
    """The id of the session's first `results` event (its replay ends there)."""

    async def replay() -> int:
        async with (
            httpx.AsyncClient(base_url=server.api, timeout=30) as client,
            client.stream("GET", f"/{sid}/events", headers=headers) as response,
        ):
            async for event in read_events(response):
                if event.event == "results":
                    assert event.data == {"type": "results", "status": "ready"}
                    assert event.id is not None
                    return int(event.id)
        raise AssertionError("no results event")

    return asyncio.run(replay())


async def next_results_event(
    server: AppServer, sid: str, headers: dict[str, str], after: int
) -> dict[str, Any]:
    """The next `results` event after `after`, as a client resuming with Last-Event-ID gets it."""
    async with (
        httpx.AsyncClient(base_url=server.api, timeout=90) as client,
        client.stream(
            "GET", f"/{sid}/events", headers={**headers, "Last-Event-ID": str(after)}
        ) as response,
    ):
        assert response.status_code == 200
        async for event in read_events(response):
            if event.event == "results":
                data: dict[str, Any] = event.data
                return data
    raise AssertionError("the stream ended without a results event")


def assert_ready_without_evaluation(body: Any, answer: str, fake: FakeOpenAI) -> None:
    assert body["status"] == "ready" and body["evaluation"] is None, body
    assert [a["text"] for q in body["questions"] for a in q["answers"]] == [answer]
    assert body["metrics"]["candidate_turns"] == 1
    note = body["evaluation_note"]
    assert note.startswith("No evaluation: the evaluation failed after 2 attempts: "), note
    assert answer not in note and fake.api_key not in note


def test_every_interview_gets_its_report_and_a_later_healthy_model_evaluates_it(
    retrying_server: AppServer, fake_openai: FakeOpenAI
):
    misbehaviours = hostile(TOOL_NAME, STALL_SECONDS)
    fake_openai.chat.default = Rotation(*misbehaviours)
    with httpx.Client(base_url=retrying_server.api, timeout=30) as api:
        sessions = [(*interview(api, answer), answer) for answer in ANSWERS]
        for sid, headers, answer in sessions:
            body = report(api, sid, headers)
            assert_ready_without_evaluation(body, answer, fake_openai)
            # The background budget (~30 s) is far from spent: it is still to come.
            assert body["evaluation_status"] == "pending_retry"
            assert "tried again in the background" in body["evaluation_note"]
            markdown = api.get(f"/{sid}/results", params={"format": "md"}, headers=headers)
            assert markdown.status_code == 200 and answer in markdown.text
        firsts = [results_event_id(retrying_server, sid, headers) for sid, headers, _ in sessions]
        # The inline attempts, then the background ones, until the model failed in every way.
        deadline = time.monotonic() + 20
        while len(fake_openai.chat_requests()) < len(misbehaviours):
            assert time.monotonic() < deadline, "the background attempts did not come"
            time.sleep(0.1)

        fake_openai.chat.default = interview_model.respond  # the model is back

        async def every_next_event() -> list[dict[str, Any]]:
            return list(
                await asyncio.gather(
                    *(
                        next_results_event(retrying_server, sid, headers, first)
                        for (sid, headers, _), first in zip(sessions, firsts, strict=True)
                    )
                )
            )

        assert asyncio.run(every_next_event()) == [{"type": "results", "status": "ready"}] * 3
        for sid, headers, answer in sessions:
            body = report(api, sid, headers)
            assert body["evaluation_status"] == "ready" and body["evaluation_note"] is None
            assert body["evaluation"]["model"] and body["evaluation"]["competencies"]
            assert [a["text"] for q in body["questions"] for a in q["answers"]] == [answer]
    log = retrying_server.log()
    assert "background_evaluation" in log and "evaluation_ready" in log
    # Every kind of failure was retried, and named.
    for reason in (
        "HTTP 500",
        "HTTP 429",
        "HTTP 503",
        "unreadable answer: not JSON",
        "unreadable answer: not a chat completion",
        "timed out",
        "invalid evaluation: arguments are not valid JSON",
        "invalid evaluation: competencies",
    ):
        assert reason in log, reason
    assert fake_openai.api_key not in log and not any(answer in log for answer in ANSWERS)


def test_an_operator_asks_for_the_evaluation_again(
    operator_server: AppServer, fake_openai: FakeOpenAI
):
    fake_openai.chat.default = Rotation(*hostile(TOOL_NAME, STALL_SECONDS))
    with httpx.Client(base_url=operator_server.api, timeout=30) as api:
        sid, headers = interview(api, ANSWERS[0])
        body = report(api, sid, headers)
        assert_ready_without_evaluation(body, ANSWERS[0], fake_openai)
        assert body["evaluation_status"] == "failed"  # no background attempt here
        first = results_event_id(operator_server, sid, headers)

        fake_openai.chat.default = interview_model.respond
        path = f"/{sid}/results/evaluation"
        assert api.post(path).status_code == 401
        assert api.post(path, headers=auth("not-the-token")).status_code == 404
        asked = api.post(path, headers=headers)
        assert asked.status_code == 202, asked.text
        assert asked.json() == {"session_id": sid, "status": "scheduled"}
        event = asyncio.run(next_results_event(operator_server, sid, headers, first))
        assert event == {"type": "results", "status": "ready"}
        body = report(api, sid, headers)
        assert body["evaluation"] is not None and body["evaluation_status"] == "ready"

        # Asked again: a new evaluation replaces it.
        assert api.post(path, headers=headers).status_code == 202


def test_what_cannot_be_evaluated_is_a_clear_409(operator_server: AppServer, fake_openai):
    with httpx.Client(base_url=operator_server.api, timeout=30) as api:
        body = api.post("/start", json={"user_id": "resilience"}).json()
        sid, headers = body["session_id"], auth(body["token"])
        running = api.post(f"/{sid}/results/evaluation", headers=headers)
        assert running.status_code == 409
        assert running.json()["error"]["code"] == "interview_running"

        silent, headers = interview(api, None)
        assert report(api, silent, headers)["evaluation_status"] == "nothing_to_evaluate"
        refused = api.post(f"/{silent}/results/evaluation", headers=headers)
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "nothing_to_evaluate"
