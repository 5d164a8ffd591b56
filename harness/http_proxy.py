"""A small reverse proxy on a free loopback port that hands each whole response over at once
(one request per connection), and lets its test decide per request: forward it, forward it and
drop the answer, or answer itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import httpx

# Hop-by-hop, or recomputed for the forwarded body.
_DROPPED = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)


# "forward"; "drop": forward, wait for the whole response, then close without a byte of it;
# bytes: a whole response of the proxy's own, sent instead (nothing reaches the server).
Decision = Literal["forward", "drop"] | bytes
Decide = Callable[[ProxiedRequest], Decision]


def _forward(_request: ProxiedRequest) -> Decision:
    return "forward"


@asynccontextmanager
async def http_proxy(
    upstream: str, decide: Decide = _forward, *, forwarded_for: bool = False
) -> AsyncIterator[str]:
    """Serve, forwarding to `upstream` as `decide` says; yields the proxy's base URL.

    `forwarded_for`: append an RFC 7239 `Forwarded: for=<the client's address>` element to what
    the client sent, as API Gateway (HTTP API) does for its integrations.
    """
    async with httpx.AsyncClient(base_url=upstream, timeout=60) as client:

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                request_line, *lines = head.rstrip("\r\n").split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                pairs = [line.split(":", 1) for line in lines if ":" in line]
                headers = [(name.strip(), value.strip()) for name, value in pairs]
                length = next((int(v) for n, v in headers if n.lower() == "content-length"), 0)
                body = await reader.readexactly(length) if length else b""
                decision = decide(ProxiedRequest(method, target, headers, body))
                if isinstance(decision, bytes):
                    writer.write(decision)
                    await writer.drain()
                    return
                forwarded = [(n, v) for n, v in headers if n.lower() not in _DROPPED]
                if forwarded_for:
                    peer = writer.get_extra_info("peername")[0]
                    forwarded.append(("Forwarded", f"for={peer};proto=http"))
                # The whole response, however long the server holds it open, then all at once.
                response = await client.request(method, target, headers=forwarded, content=body)
                if decision == "drop":
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
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.close()
            await server.wait_closed()
