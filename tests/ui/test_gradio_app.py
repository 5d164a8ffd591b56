"""The Gradio demo UI on a real server: /ui is served without internet-bound assets, and a session
started through the UI's own functions (Gradio's HTTP API, as the page calls them) is an ordinary
interview session in the REST API, with its transcript and results."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import httpx

from harness.app_server import AppServer

UI_READY_SECONDS = 120  # gradio is imported and the page built after start-up; slow when busy
LONG_ANSWER = (
    "I rebuilt our payments service in Python with PostgreSQL, added idempotency keys and "
    "cut failed charges by half."
)


def wait_for_ui(server: AppServer) -> httpx.Response:
    deadline = time.monotonic() + UI_READY_SECONDS
    while True:
        response = httpx.get(f"{server.base_url}/ui/", timeout=10)
        if response.status_code == 200:
            return response
        assert response.status_code == 503, response.text[:500]
        assert response.headers["retry-after"] == "2"
        assert time.monotonic() < deadline, "the UI was not built in time:\n" + server.log()[-3000:]
        time.sleep(0.5)


def call(server: AppServer, api_name: str, data: list[Any], session_hash: str) -> list[Any]:
    """Run one event of the page through Gradio's queue, as the browser does, for the page whose
    session hash is given (the UI keeps one interview per page)."""
    [message] = run_events(server, api_name, [data], session_hash)
    assert message["success"], message
    output: list[Any] = message["output"]["data"]
    return output


def run_events(
    server: AppServer, api_name: str, batch: list[list[Any]], session_hash: str
) -> list[dict[str, Any]]:
    """Queue one event per item of `batch` at once (as a page does when two of its events fire
    together), then follow the page's one stream until each is done: Gradio's completion
    messages, in `batch`'s order (`success` is False after a gr.Error)."""
    base = f"{server.base_url}/ui/gradio_api"
    config = httpx.get(f"{server.base_url}/ui/config", timeout=10).json()
    fn_index = next(d["id"] for d in config["dependencies"] if d["api_name"] == api_name)
    event_ids = []
    for data in batch:
        body = {"data": data, "fn_index": fn_index, "session_hash": session_hash}
        joined = httpx.post(f"{base}/queue/join", json=body, timeout=30)
        joined.raise_for_status()
        event_ids.append(joined.json()["event_id"])
    completed: dict[str, dict[str, Any]] = {}
    params = {"session_hash": session_hash}
    with httpx.stream("GET", f"{base}/queue/data", params=params, timeout=60) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data: "):
                continue
            message = json.loads(line.removeprefix("data: "))
            if message.get("event_id") in event_ids and message["msg"] == "process_completed":
                completed[message["event_id"]] = message
                if len(completed) == len(event_ids):
                    return [completed[event_id] for event_id in event_ids]
    raise AssertionError(f"no result for {api_name}: {completed}")


def session_of(view: list[Any]) -> tuple[str, str]:
    """The session id and API token the page shows (its last output)."""
    match = re.search(r"Session `([^`]+)`.*token: `([^`]+)`", view[-1], re.DOTALL)
    assert match, view[-1]
    return match.group(1), match.group(2)


def test_ui_is_served_without_internet_assets(api_server: AppServer) -> None:
    page = wait_for_ui(api_server).text
    assert "Spool Interview: demo" in page
    # Gradio's template reaches for a CDN script and Google Fonts; the served page does not.
    assert "cdnjs.cloudflare.com" not in page
    assert "fonts.googleapis.com" not in page
    assert "fonts.gstatic.com" not in page
    # These servers run with VOICE_ENABLED=false: the page says so and offers typing.
    assert "Voice is off on this server" in page
    redirect = httpx.get(f"{api_server.base_url}/ui", timeout=10)
    assert redirect.status_code in (307, 308)
    assert redirect.headers["location"].endswith("/ui/")
    # The REST API is unaffected by the mount.
    assert httpx.get(f"{api_server.api}/health", timeout=10).status_code == 200


def test_a_session_started_in_the_ui_is_an_api_session(api_server: AppServer) -> None:
    wait_for_ui(api_server)
    page = uuid.uuid4().hex[:11]
    plans = httpx.get(f"{api_server.api}/plans", timeout=10).json()
    plan_id = plans["default_plan_id"]

    started = call(api_server, "start", [plan_id, None], page)
    session_id, token = session_of(started)
    status_md, transcript, results, _ = started
    assert "Interview created" in status_md
    assert [m["role"] for m in transcript] == ["assistant"]
    assert results == ""

    auth = {"Authorization": f"Bearer {token}"}
    api = httpx.Client(base_url=api_server.api, headers=auth, timeout=10)
    turns = api.get(f"/{session_id}/transcript").json()["turns"]
    assert [t["text"] for t in turns] == [transcript[0]["content"]]

    answered = call(api_server, "answer", [LONG_ANSWER, str(uuid.uuid4())], page)
    assert answered[0] == ""  # the answer box is cleared
    assert [m["role"] for m in answered[2]] == ["assistant", "user", "assistant"]
    turns = api.get(f"/{session_id}/transcript").json()["turns"]
    assert [(t["role"], t["source"]) for t in turns] == [
        ("interviewer", "text"),
        ("candidate", "text"),
        ("interviewer", "text"),
    ]
    assert turns[1]["text"] == LONG_ANSWER
    assert turns[2]["text"] == answered[2][2]["content"]

    ended = call(api_server, "end", [], page)
    assert "Interview ended (candidate)" in ended[0]
    assert api.get(f"/{session_id}/status").json()["status"] == "ended"

    deadline = time.monotonic() + 30
    while (results_response := api.get(f"/{session_id}/results")).status_code == 202:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    report = results_response.json()
    assert report["user_id"] == "gradio-demo"
    assert report["plan"]["id"] == plan_id
    assert report["questions"][0]["answers"][0]["text"] == LONG_ANSWER

    # The page shows the same report, as interview.report renders it in Markdown.
    deadline = time.monotonic() + 30
    shown = ended[2]
    while "# Interview report" not in shown:
        assert time.monotonic() < deadline, shown
        time.sleep(0.3)
        refreshed = call(api_server, "refresh", [], page)
        shown = refreshed[2] if isinstance(refreshed[2], str) else shown
    assert f"`{session_id}`" in shown
    assert "Questions covered" in shown
    assert "I rebuilt our payments service" in shown


def test_a_page_only_acts_on_its_own_interview(api_server: AppServer) -> None:
    wait_for_ui(api_server)
    first, second = uuid.uuid4().hex[:11], uuid.uuid4().hex[:11]
    plan_id = httpx.get(f"{api_server.api}/plans", timeout=10).json()["default_plan_id"]
    one, _ = session_of(call(api_server, "start", [plan_id, None], first))
    two, _ = session_of(call(api_server, "start", [plan_id, None], second))
    assert one != two
    call(api_server, "answer", [LONG_ANSWER, str(uuid.uuid4())], first)
    ended = call(api_server, "end", [], second)
    assert "Interview ended" in ended[0]
    again = "Another answer from the first page, which is still open."
    still_open = call(api_server, "answer", [again, str(uuid.uuid4())], first)
    assert [m["role"] for m in still_open[2]].count("user") == 2


def test_the_voice_picked_in_the_ui_is_the_sessions(api_server: AppServer) -> None:
    wait_for_ui(api_server)
    config = httpx.get(f"{api_server.base_url}/ui/config", timeout=10).json()
    [dropdown] = [c for c in config["components"] if c["props"].get("elem_id") == "voice"]
    # Voice is off on these servers: the plans' voices and TTS_VOICE are offered, and the
    # default plan's voice is picked until the user picks another.
    offered = [choice[1] for choice in dropdown["props"]["choices"]]
    assert {"af_heart", "af_sarah"} <= set(offered)
    assert dropdown["props"]["interactive"] is True
    assert dropdown["props"]["value"] == "af_heart"

    page = uuid.uuid4().hex[:11]
    started = call(api_server, "start", ["backend-engineer-screen", "af_sarah"], page)
    session_id, token = session_of(started)
    assert "voice `af_sarah`" in started[-1]
    auth = {"Authorization": f"Bearer {token}"}
    status = httpx.get(f"{api_server.api}/{session_id}/status", headers=auth, timeout=10).json()
    assert (status["plan_id"], status["voice"]) == ("backend-engineer-screen", "af_sarah")


def test_a_double_submit_stores_one_answer(api_server: AppServer) -> None:
    """The page sends each answer with its key (made when it was typed): Enter and Send at once
    carry the same one, and the service stores the answer once; both get the same view."""
    wait_for_ui(api_server)
    page = uuid.uuid4().hex[:11]
    plan_id = httpx.get(f"{api_server.api}/plans", timeout=10).json()["default_plan_id"]
    session_id, token = session_of(call(api_server, "start", [plan_id, None], page))
    key = str(uuid.uuid4())
    both = run_events(api_server, "answer", [[LONG_ANSWER, key], [LONG_ANSWER, key]], page)
    assert all(message["success"] for message in both), both
    views = [message["output"]["data"] for message in both]
    api = httpx.Client(
        base_url=api_server.api, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    turns = api.get(f"/{session_id}/transcript").json()["turns"]
    assert [(t["role"], t["text"]) for t in turns][1:2] == [("candidate", LONG_ANSWER)]
    assert [t["role"] for t in turns] == ["interviewer", "candidate", "interviewer"]
    shown = [[(m["role"], m["content"]) for m in view[2]] for view in views]
    expected = [("assistant" if t["role"] == "interviewer" else "user", t["text"]) for t in turns]
    assert shown[0] == shown[1] == expected
    # The same words sent again later, typed again (a new key): another answer.
    call(api_server, "answer", [LONG_ANSWER, str(uuid.uuid4())], page)
    roles = [t["role"] for t in api.get(f"/{session_id}/transcript").json()["turns"]]
    assert roles.count("candidate") == 2


def test_an_answer_without_a_key_is_taken_and_a_malformed_key_is_refused(
    api_server: AppServer,
) -> None:
    wait_for_ui(api_server)
    page = uuid.uuid4().hex[:11]
    plan_id = httpx.get(f"{api_server.api}/plans", timeout=10).json()["default_plan_id"]
    call(api_server, "start", [plan_id, None], page)
    [refused] = run_events(api_server, "answer", [[LONG_ANSWER, "has spaces"]], page)
    assert refused["success"] is False
    assert "key" in (refused["output"].get("error") or ""), refused
    answered = call(api_server, "answer", [LONG_ANSWER, ""], page)  # a caller without keys
    assert [m["role"] for m in answered[2]] == ["assistant", "user", "assistant"]
