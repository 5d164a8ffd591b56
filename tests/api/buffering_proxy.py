"""A reverse proxy that forwards each response only once it has ended, as API Gateway's HTTP APIs
(v2) do: they have no streaming mode, so a Server-Sent Events response reaches the browser whole,
when the server ends it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

# Hop-by-hop, or recomputed for the buffered body.
_DROPPED = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@asynccontextmanager
async def buffering_proxy(upstream: str) -> AsyncIterator[str]:
    """Serve on a free loopback port, forwarding to `upstream`; yields the proxy's base URL."""
    async with httpx.AsyncClient(base_url=upstream, timeout=60) as client:

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                request_line, *lines = head.rstrip("\r\n").split("\r\n")
                method, target, _ = request_line.split(" ", 2)
                headers = [tuple(line.split(":", 1)) for line in lines if ":" in line]
                headers = [(name.strip(), value.strip()) for name, value in headers]
                length = next((int(v) for n, v in headers if n.lower() == "content-length"), 0)
                body = await reader.readexactly(length) if length else b""
                forwarded = [(n, v) for n, v in headers if n.lower() not in _DROPPED]
                # The whole response, however long the server holds it open, then all at once.
                response = await client.request(method, target, headers=forwarded, content=body)
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
