"""A reverse proxy that fails typed answers on purpose, as a network or a busy server does: it
records every request's Idempotency-Key and, answer by answer, forwards it, drops the
connection after the server has taken it, or answers 503 with Retry-After itself."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

import httpx

# Hop-by-hop, or recomputed for the forwarded body.
_DROPPED = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}

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
    async with httpx.AsyncClient(base_url=upstream, timeout=60) as client:
        proxy = AnswerProxy(base_url="")

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                request_line, *lines = head.rstrip("\r\n").split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                headers = [tuple(line.split(":", 1)) for line in lines if ":" in line]
                headers = [(name.strip(), value.strip()) for name, value in headers]
                length = next((int(v) for n, v in headers if n.lower() == "content-length"), 0)
                body = await reader.readexactly(length) if length else b""
                key = next((v for n, v in headers if n.lower() == "idempotency-key"), None)
                action: Action = "forward"
                if method == "POST" and target.endswith("/transcript") and proxy.plan:
                    action = proxy.plan.pop(0)
                proxy.seen.append(Seen(time.monotonic(), method, target, key, action))
                if action == "busy":
                    writer.write(_busy_response(proxy.retry_after))
                    await writer.drain()
                    return
                forwarded = [(n, v) for n, v in headers if n.lower() not in _DROPPED]
                response = await client.request(method, target, headers=forwarded, content=body)
                if action == "drop":
                    return  # the server has answered; the client gets nothing
                out = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
                out += [
                    f"{n}: {v}" for n, v in response.headers.items() if n.lower() not in _DROPPED
                ]
                out += [f"content-length: {len(response.content)}", "connection: close"]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + response.content)
                await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        proxy.base_url = f"http://127.0.0.1:{port}"
        try:
            yield proxy
        finally:
            server.close()
            await server.wait_closed()
