"""ASGI middleware: limits on a request's headers, body size and body read time, CORS with JSON
refusals, and one structured log line per request."""

from __future__ import annotations

import asyncio
import time

import structlog
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from interview.api.schemas import ErrorBody, ErrorResponse

log = structlog.get_logger("interview.requests")


class BodySizeLimitMiddleware:
    """Refuse request bodies over `max_bytes` on paths under `prefix` with a 413.

    A declared Content-Length is refused before reading; a chunked body is counted as it
    streams, so a client cannot get past the limit by not declaring a length.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, prefix: str = "/api/") -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        # uvicorn has already refused a Content-Length that is not a number.
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and int(declared) > self.max_bytes:
            await self._refuse_too_large(send)
            return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # FastAPI passes HTTPExceptions raised while reading the body through, so
                    # this becomes a JSON 413 via the app's own error handler.
                    raise HTTPException(413, self._too_large_message())
            return message

        await serve_or_refuse(
            self.app, scope, counting_receive, send, 413, "content_too_large",
            self._too_large_message(),
        )  # fmt: skip

    def _too_large_message(self) -> str:
        return f"The request body is larger than {self.max_bytes} bytes."

    async def _refuse_too_large(self, send: Send) -> None:
        await send_error(send, 413, "content_too_large", self._too_large_message())


class RequestBodyTimeoutMiddleware:
    """Answer 408 and close the connection when a request body under `prefix` takes longer than
    `seconds` to arrive.

    The whole body counts, from the moment the app first asks for it: a client that trickles a
    byte now and then is cut as surely as one that stalls. Nothing else waits on a receive:
    requests without a body complete at once, and once the body is in, later receives (an event
    stream listening for the client's disconnect) are left alone.
    """

    def __init__(self, app: ASGIApp, seconds: float, prefix: str = "/api/") -> None:
        self.app = app
        self.seconds = seconds
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        deadline: float | None = None
        body_done = False

        async def timed_receive() -> Message:
            nonlocal deadline, body_done
            if body_done:
                return await receive()
            loop = asyncio.get_running_loop()
            if deadline is None:
                deadline = loop.time() + self.seconds
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                # FastAPI passes HTTPExceptions raised while reading the body through: a JSON
                # 408 from the app's own error handler, closing the connection.
                raise HTTPException(
                    408, self._timeout_message(), headers={"Connection": "close"}
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await serve_or_refuse(
            self.app, scope, timed_receive, send, 408, "request_timeout", self._timeout_message()
        )

    def _timeout_message(self) -> str:
        return f"The request body did not arrive within {self.seconds:g} seconds."


class HeaderSizeLimitMiddleware:
    """Refuse requests whose headers are larger than `max_bytes` in all with a JSON 431.

    The HTTP parser (httptools) sets no limit of its own: without this, a client could send
    megabytes of headers to every route. Proxies in front have theirs (API Gateway: 10 KiB).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            size = sum(len(name) + len(value) + 4 for name, value in scope["headers"])
            if size > self.max_bytes:
                if scope["type"] == "http":
                    message = f"The request's headers are larger than {self.max_bytes} bytes."
                    await send_error(send, 431, "request_header_fields_too_large", message)
                else:
                    await send({"type": "websocket.close", "code": 1009})
                return
        await self.app(scope, receive, send)


class JSONErrorCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, whose refused preflight is the API's JSON error, not plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        # Starlette's text names what was refused: "Disallowed CORS origin, headers".
        message = bytes(response.body).decode("utf-8", "replace") + "."
        body = ErrorResponse(error=ErrorBody(code="cors_refused", message=message))
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        headers.pop("content-type", None)
        return JSONResponse(body.model_dump(), status_code=response.status_code, headers=headers)


async def serve_or_refuse(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    code: str,
    message: str,
) -> None:
    """Run the app with a `receive` that raises HTTPException(status) on a body it refuses;
    when that escapes the app before any response started, answer it as the API's JSON error."""
    started = False

    async def tracking_send(event: Message) -> None:
        nonlocal started
        if event["type"] == "http.response.start":
            started = True
        await send(event)

    try:
        await app(scope, receive, tracking_send)
    except HTTPException as exc:
        if exc.status_code != status or started:
            raise
        await send_error(send, status, code, message)


async def send_error(send: Send, status: int, code: str, message: str) -> None:
    """Answer with the API's JSON error body and close the connection (the request's body, if
    any, was not read)."""
    error = ErrorBody(code=code, message=message)
    body = ErrorResponse(error=error).model_dump_json().encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestLogMiddleware:
    """One JSON line per HTTP request: method, path, status, duration. Never headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            # The router records path parameters in the scope; a session route's id is logged
            # as its own field so one session's requests can be filtered.
            session_id = scope.get("path_params", {}).get("session_id")
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round((time.perf_counter() - start) * 1000, 1),
                **({"session_id": session_id} if session_id else {}),
            )
