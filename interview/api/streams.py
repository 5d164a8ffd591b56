"""How /openapi.json describes a Server-Sent Events route: each event under text/event-stream,
its `data` schema derived from the pydantic models that the route sends."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, RootModel

from interview import events


class SessionEvent(RootModel[events.SessionEvent]):
    """The `data` of each /events message: one event, whose `type` is also the SSE `event`."""


def event_stream_responses(model: type[BaseModel], description: str) -> dict[int | str, Any]:
    """`responses=` for a route that streams `model` as Server-Sent Events.

    Give the route `response_model=model` too: FastAPI then publishes the model (and what it
    refers to) under components/schemas, and the 200 response points at it. The route's
    response class (sse_starlette's) names no media type, so FastAPI adds no JSON body of its own.
    """
    data = {"$ref": f"#/components/schemas/{model.__name__}"}
    # Before OpenAPI 3.2's itemSchema, a text/event-stream `schema` describes one event, its
    # fields as the stream carries them (as schemathesis reads it): `data` holds the JSON.
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": data,
            },
            "event": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    }
    return {200: {"description": description, "content": {"text/event-stream": {"schema": event}}}}
