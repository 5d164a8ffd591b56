"""What a draining server does with its HTTP traffic: it knows the requests in flight, closes
each connection after its response, and ends the open event streams as complete responses.

A stopping server that closes a connection under a request (or with a request unread) resets
it; one that cancels an event stream leaves the client an unterminated chunked body. Here the
server (app.py's DrainingServer) waits for the requests in flight, then ends every event stream
with its final chunk; the stream's app then sees the client gone (ASGI: `receive` says
`http.disconnect` once the response is complete) and returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

EVENT_STREAM = b"text/event-stream"


class Traffic:
    """The HTTP requests this server is answering, the event streams among them apart."""

    def __init__(self) -> None:
        # Requests whose response is not complete, event streams not included.
        self.in_flight = 0
        self._streams: set[_Stream] = set()
        self._ending = False

    @property
    def streams(self) -> int:
        return len(self._streams)

    async def end_streams(self) -> int:
        """End every open event stream with a complete response; one that starts later ends
        as soon as it starts. Returns how many were open."""
        self._ending = True
        streams = list(self._streams)
        await asyncio.gather(*(stream.end() for stream in streams))
        return len(streams)


class _Stream:
    """One event stream's `send`, which the server may end between two of the app's messages."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._lock = asyncio.Lock()
        self.complete = False

    async def send(self, message: Message) -> None:
        async with self._lock:
            if self.complete:
                return  # ended by the server: what the app still sends goes nowhere
            await self._send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self.complete = True

    async def end(self) -> None:
        async with self._lock:
            if not self.complete:
                self.complete = True
                await self._send({"type": "http.response.body", "body": b"", "more_body": False})


class DrainingConnections:
    """ASGI middleware: counts the requests in flight and the event streams (in `traffic`), and
    while `draining()` says so, each response carries `Connection: close`, so the client's next
    request opens a new connection, which the load balancer sends to an instance that stays."""

    def __init__(self, app: ASGIApp, draining: Callable[[], bool], traffic: Traffic) -> None:
        self.app = app
        self.draining = draining
        self.traffic = traffic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        traffic = self.traffic
        stream: _Stream | None = None
        counted = True
        traffic.in_flight += 1

        async def send_checked(message: Message) -> None:
            nonlocal stream, counted
            if stream is not None:
                await stream.send(message)
                return
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                named = {name.lower() for name, _ in headers}
                if self.draining() and b"connection" not in named:
                    headers.append((b"connection", b"close"))
                    message = {**message, "headers": headers}
                if any(
                    name.lower() == b"content-type" and value.startswith(EVENT_STREAM)
                    for name, value in headers
                ):
                    stream = _Stream(send)
                    traffic._streams.add(stream)
                    traffic.in_flight -= 1
                    counted = False
                    await stream.send(message)
                    if traffic._ending:
                        await stream.end()
                    return
            await send(message)

        try:
            await self.app(scope, receive, send_checked)
        finally:
            if counted:
                traffic.in_flight -= 1
            if stream is not None:
                traffic._streams.discard(stream)
