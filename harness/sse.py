"""Read Server-Sent Events from a real HTTP response, as a browser's EventSource would."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Sse:
    id: str | None
    event: str
    data: Any
    retry: int | None


async def read_events(response: httpx.Response) -> AsyncIterator[Sse]:
    """Events until the server ends the response; comments (pings) are skipped."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields or "event" in fields:
                yield Sse(
                    id=fields.get("id"),
                    event=fields.get("event", "message"),
                    data=json.loads(fields["data"]) if "data" in fields else None,
                    retry=int(fields["retry"]) if "retry" in fields else None,
                )
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value[1:] if value.startswith(" ") else value
