"""/openapi.json as the web client sees it: the live events are in it, what the events route sends
matches it, and ui/web/openapi.json (from which the client's types are generated) is current."""

from __future__ import annotations

import json
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import httpx

from harness.app_server import AppServer
from harness.sse import read_events
from interview.events import SessionEvent
from tests.api.helpers import auth

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "ui" / "web" / "openapi.json"
EVENTS = "/api/interview/{session_id}/events"
REF = "#/components/schemas/"


def live_spec(server: AppServer) -> dict[str, Any]:
    response = httpx.get(f"{server.base_url}/openapi.json", timeout=10)
    assert response.status_code == 200
    return response.json()


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The paths and schemas that differ, to say what changed."""
    found: list[str] = []
    for where in (("paths",), ("components", "schemas")):
        a, b = old, new
        for key in where:
            a, b = a.get(key, {}), b.get(key, {})
        found += [name for name in sorted(a.keys() | b.keys()) if a.get(name) != b.get(name)]
    return found or ["its other parts"]


def test_the_web_clients_copy_of_the_schema_is_current(api_server: AppServer):
    committed = json.loads(COMMITTED.read_text())
    live = live_spec(api_server)
    assert committed == live, (
        "ui/web/openapi.json differs from the app's /openapi.json in "
        f"{', '.join(differences(committed, live))}: run `make openapi` (then `make web`, which "
        "regenerates the web client's types and type-checks the client against them)"
    )


def test_make_openapi_writes_the_live_document(api_server: AppServer):
    # `make openapi` runs `python app.py openapi`: what it prints is what the server serves.
    run = subprocess.run(
        [sys.executable, "app.py", "openapi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(run.stdout) == live_spec(api_server)


def test_the_events_route_publishes_each_event(api_server: AppServer):
    spec = live_spec(api_server)
    schemas = spec["components"]["schemas"]
    content = spec["paths"][EVENTS]["get"]["responses"]["200"]["content"]
    assert list(content) == ["text/event-stream"]
    # The schema is of one event as the stream carries it; its `data` is the JSON event.
    event = content["text/event-stream"]["schema"]
    assert event["required"] == ["data"]
    assert set(event["properties"]) == {"data", "event", "id", "retry"}
    data = event["properties"]["data"]
    assert data["contentMediaType"] == "application/json"
    union = schemas[data["contentSchema"]["$ref"].removeprefix(REF)]

    # One member per event model of interview.events, each published under its own name.
    models = typing.get_args(typing.get_args(SessionEvent)[0])
    assert [member["$ref"] for member in union["oneOf"]] == [REF + m.__name__ for m in models]
    assert union["discriminator"]["propertyName"] == "type"
    mapping = union["discriminator"]["mapping"]
    assert mapping == {m.model_fields["type"].default: REF + m.__name__ for m in models}
    for kind, ref in mapping.items():
        assert schemas[ref.removeprefix(REF)]["properties"]["type"]["const"] == kind


async def test_what_the_events_route_sends_is_what_it_publishes(api_server: AppServer):
    schemas = live_spec(api_server)["components"]["schemas"]
    mapping = schemas["SessionEvent"]["discriminator"]["mapping"]
    async with httpx.AsyncClient(base_url=api_server.api, timeout=30) as client:
        session = (await client.post("/start", json={"user_id": "contract"})).json()
        sid, headers = session["session_id"], auth(session["token"])
        answered = await client.post(f"/{sid}/transcript", json={"text": "Yes."}, headers=headers)
        assert answered.status_code == 200
        assert (await client.post(f"/{sid}/end", headers=headers)).status_code == 200
        # Without Last-Event-ID the whole history is replayed; "results" ends the stream.
        async with client.stream("GET", f"/{sid}/events", headers=headers) as response:
            events = [event async for event in read_events(response)]
    assert {"status", "turn", "results"} <= {event.event for event in events}
    for event in events:
        assert event.data["type"] == event.event
        schema = schemas[mapping[event.event].removeprefix(REF)]
        assert set(schema.get("required", [])) <= event.data.keys() <= schema["properties"].keys()
