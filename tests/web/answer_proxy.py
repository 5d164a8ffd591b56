"""A reverse proxy that fails typed answers on purpose, as a network or a busy server does: it
records every request's Idempotency-Key and, answer by answer, forwards it, drops the
connection after the server has taken it, or answers 503 with Retry-After itself."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

from harness.http_proxy import Decision, ProxiedRequest, http_proxy

# What the proxy does with one POST .../transcript:
# - "forward": as any other request;
# - "drop": forward it, wait for the server's whole response, then close the client's
#   connection without a byte of it (the answer is stored, the client never learns it);
# - "busy": answer 503 database_unavailable with Retry-After itself (nothing reaches the server).
Action = Literal["forward", "drop", "busy"]


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic() when the request had arrived whole
    method: str
    path: str
    idempotency_key: str | None
    action: Action


@dataclass
class AnswerProxy:
    base_url: str
    # The actions for the next answers, in order; then "forward".
    plan: list[Action] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    retry_after: int = 1

    def answers(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and s.path.endswith("/transcript")]


def _busy_response(retry_after: int) -> bytes:
    body = json.dumps(
        {
            "error": {
                "code": "database_unavailable",
                "message": "The interview database is unavailable; try again shortly.",
                "details": [],
            }
        }
    ).encode()
    head = [
        "HTTP/1.1 503 Service Unavailable",
        "content-type: application/json",
        f"retry-after: {retry_after}",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


@asynccontextmanager
async def answer_proxy(upstream: str) -> AsyncIterator[AnswerProxy]:
    """Serve on a free loopback port, forwarding to `upstream` (one request per connection)."""
    proxy = AnswerProxy(base_url="")

    def decide(request: ProxiedRequest) -> Decision:
        action: Action = "forward"
        if request.method == "POST" and request.target.endswith("/transcript") and proxy.plan:
            action = proxy.plan.pop(0)
        key = request.header("Idempotency-Key")
        proxy.seen.append(Seen(time.monotonic(), request.method, request.target, key, action))
        return _busy_response(proxy.retry_after) if action == "busy" else action

    async with http_proxy(upstream, decide) as base_url:
        proxy.base_url = base_url
        yield proxy
