"""An OpenAI-compatible server on 127.0.0.1 for tests: real HTTP, real SSE streaming.

The OpenAI API is the one paid remote service the project talks to, so the tests point the real
`openai` client at this server instead. It speaks the wire format of the endpoints the project
uses (chat completions with tools, streamed or not; audio transcriptions; audio speech), records
every request for inspection, and plays behaviours queued by the test: a reply, an HTTP error, a
hang, a body that stalls or is not JSON, a malformed tool call (`hostile` lists one of each).

    fake = FakeOpenAI()
    fake.start()
    fake.chat.append(ToolCall("next_turn", {"action": "close", "say": "Thanks, goodbye."}))
    ... OPENAI_BASE_URL=fake.base_url ...
    fake.stop()

When the queue for a route is empty, its `default` callable decides from the request (tests set
it to a small rule-based "model").
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from harness.ports import free_port


@dataclass
class ToolCall:
    """The assistant calls one tool; `arguments` as a dict is sent as JSON, a str as is (so a
    test can send malformed JSON). Streamed in `chunks` pieces, `delay` seconds apart."""

    name: str
    arguments: dict[str, Any] | str
    chunks: int = 8
    delay: float = 0.0
    # Seconds to wait after the last argument piece before the stream ends: lets a test see
    # that the first sentence was used before the completion finished.
    tail_delay: float = 0.0


@dataclass
class Text:
    """Plain assistant content (also how a JSON-schema response_format answer is sent)."""

    content: str
    chunks: int = 8
    delay: float = 0.0


@dataclass
class Fail:
    status: int
    message: str = "injected failure"
    # Sent as the Retry-After header: seconds, or an HTTP date as a str.
    retry_after: float | str | None = None


@dataclass
class Hang:
    """Answer nothing for `seconds` (the client's timeout should fire first)."""

    seconds: float


@dataclass
class Stall:
    """Answer 200 and the first bytes of a body (`head`), then nothing for `seconds`, then end
    it there: a server that stalls mid-answer (the client's timeout should fire first)."""

    head: bytes
    seconds: float
    content_type: str = "application/json"


@dataclass
class Transcript:
    text: str


@dataclass
class Speech:
    """PCM16 mono 24 kHz bytes, streamed in `chunks` pieces, `delay` seconds apart."""

    pcm: bytes
    chunks: int = 4
    delay: float = 0.0


@dataclass
class Raw:
    """Any body with any status and content type: a proxy's HTML page, a truncated answer."""

    body: bytes
    content_type: str = "text/html"
    status: int = 200


Behaviour = ToolCall | Text | Fail | Hang | Stall | Transcript | Speech | Raw


class Rotation:
    """Behaviours in turn, for ever: a route's `default` for a model that keeps misbehaving."""

    def __init__(self, *behaviours: Behaviour) -> None:
        self._behaviours = itertools.cycle(behaviours)

    def __call__(self, _body: dict[str, Any]) -> Behaviour:
        return next(self._behaviours)


def hostile(tool: str, stall_seconds: float) -> list[Behaviour]:
    """One of each way a chat completion goes wrong, for a client whose timeout is shorter than
    `stall_seconds` and whose forced tool is `tool`: HTTP errors, a 429 with Retry-After,
    bodies that are not JSON (garbage, a proxy's HTML page, empty, truncated, not a completion),
    a server that answers nothing or stalls mid-body, and tool calls that do not parse or do
    not fit the schema."""
    return [
        Fail(500),
        Fail(429, "slow down", retry_after=0.2),
        Fail(503, "overloaded"),
        Raw(b"{this is not json", "application/json"),
        Raw(b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"),
        Raw(b"", "application/json"),
        Raw(b'{"id": "chatcmpl-x", "object": "chat.completion", "choi', "application/json"),
        Raw(
            b'{"id": "chatcmpl-x", "object": "chat.completion", "choices": null}',
            "application/json",
        ),
        Hang(stall_seconds),
        Stall(b'{"id": "chatcmpl-x", "object": "chat.', stall_seconds),
        ToolCall(tool, '{"competencies": [{"competency_id": '),
        ToolCall(tool, {"competencies": "all great", "verdict": "hire"}),
    ]


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float = field(default_factory=time.time)
    # Uploaded multipart files by form field (the audio sent for transcription).
    files: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Route:
    queue: deque[Behaviour] = field(default_factory=deque)
    default: Callable[[dict[str, Any]], Behaviour] | None = None

    def append(self, *behaviours: Behaviour) -> None:
        self.queue.extend(behaviours)

    def next(self, body: dict[str, Any]) -> Behaviour:
        if self.queue:
            return self.queue.popleft()
        if self.default is not None:
            return self.default(body)
        return Fail(500, "the test queued no behaviour for this request")


class FakeOpenAI:
    def __init__(self, api_key: str = "sk-test-fake-key-0000") -> None:
        self.api_key = api_key
        self.port = free_port()
        self.requests: list[RecordedRequest] = []
        self.chat = Route()
        self.transcriptions = Route()
        self.speech = Route()
        # When (time.monotonic(), this process) each streamed completion sent its last byte,
        # by request number.
        self.completed_at: dict[int, float] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def env(self) -> dict[str, str]:
        """The environment that points the service at this server."""
        return {"OPENAI_API_KEY": self.api_key, "OPENAI_BASE_URL": self.base_url}

    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def transcription_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/audio/transcriptions")]

    def speech_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/audio/speech")]

    def start(self) -> None:
        config = uvicorn.Config(
            self._app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def reset(self) -> None:
        self.requests.clear()
        self.completed_at.clear()
        for route in (self.chat, self.transcriptions, self.speech):
            route.queue.clear()
            route.default = None

    # the HTTP side

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            body = await request.json()
            denied = self._record(request, body)
            if denied is not None:
                return denied
            number = len(self.requests) - 1
            behaviour = self.chat.next(body)
            early = await self._common(behaviour)
            if early is not None:
                return early
            if body.get("stream"):
                return StreamingResponse(
                    self._stream_chat(behaviour, body, number), media_type="text/event-stream"
                )
            if isinstance(behaviour, ToolCall | Text):
                # Whole, after as long as its streamed pieces would have taken.
                await asyncio.sleep(behaviour.delay * behaviour.chunks)
            return JSONResponse(_completion(behaviour, body))

        @app.post("/v1/audio/transcriptions")
        async def transcriptions(request: Request) -> Response:
            form = await request.form()
            upload = form.get("file")
            audio = await upload.read() if isinstance(upload, UploadFile) else b""
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            described = {
                "file_bytes": len(audio),
                "file_name": getattr(upload, "filename", None),
                "file_content_type": getattr(upload, "content_type", None),
            }
            denied = self._record(request, {**fields, **described}, files={"file": audio})
            if denied is not None:
                return denied
            behaviour = self.transcriptions.next({**fields, "audio": audio})
            early = await self._common(behaviour)
            if early is not None:
                return early
            assert isinstance(behaviour, Transcript), behaviour
            return JSONResponse({"text": behaviour.text})

        @app.post("/v1/audio/speech")
        async def speech(request: Request) -> Response:
            body = await request.json()
            denied = self._record(request, body)
            if denied is not None:
                return denied
            behaviour = self.speech.next(body)
            early = await self._common(behaviour)
            if early is not None:
                return early
            assert isinstance(behaviour, Speech), behaviour
            return StreamingResponse(_pieces(behaviour.pcm, behaviour.chunks, behaviour.delay))

        return app

    def _record(
        self, request: Request, body: dict[str, Any], files: dict[str, bytes] | None = None
    ) -> Response | None:
        self.requests.append(
            RecordedRequest(request.url.path, dict(request.headers), body, files=files or {})
        )
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided")
        return None

    async def _common(self, behaviour: Behaviour) -> Response | None:
        if isinstance(behaviour, Fail):
            response = _error(behaviour.status, behaviour.message)
            if behaviour.retry_after is not None:
                response.headers["retry-after"] = str(behaviour.retry_after)
            return response
        if isinstance(behaviour, Hang):
            await asyncio.sleep(behaviour.seconds)
            return _error(504, "hung on purpose")
        if isinstance(behaviour, Raw):
            return Response(behaviour.body, behaviour.status, media_type=behaviour.content_type)
        if isinstance(behaviour, Stall):
            return StreamingResponse(_stalled(behaviour), media_type=behaviour.content_type)
        return None

    async def _stream_chat(
        self, behaviour: Behaviour, body: dict[str, Any], number: int
    ) -> AsyncIterator[bytes]:
        model = body.get("model", "fake")
        yield _sse(_chunk(model, {"role": "assistant", "content": None}))
        if isinstance(behaviour, ToolCall):
            arguments = _arguments(behaviour)
            for k, piece in enumerate(_split(arguments, behaviour.chunks)):
                call: dict[str, Any] = {"index": 0, "function": {"arguments": piece}}
                if k == 0:
                    call.update(id="call_fake_0", type="function")
                    call["function"]["name"] = behaviour.name
                yield _sse(_chunk(model, {"tool_calls": [call]}))
                await asyncio.sleep(behaviour.delay)
            await asyncio.sleep(behaviour.tail_delay)
            yield _sse(_chunk(model, {}, finish="tool_calls"))
        elif isinstance(behaviour, Text):
            for piece in _split(behaviour.content, behaviour.chunks):
                yield _sse(_chunk(model, {"content": piece}))
                await asyncio.sleep(behaviour.delay)
            yield _sse(_chunk(model, {}, finish="stop"))
        yield b"data: [DONE]\n\n"
        self.completed_at[number] = time.monotonic()


def _arguments(call: ToolCall) -> str:
    return call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)


async def _stalled(stall: Stall) -> AsyncIterator[bytes]:
    yield stall.head
    await asyncio.sleep(stall.seconds)


def _split(text: str, parts: int) -> list[str]:
    size = max(1, -(-len(text) // max(parts, 1)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _pieces(data: bytes, parts: int, delay: float = 0.0) -> AsyncIterator[bytes]:
    async def generate() -> AsyncIterator[bytes]:
        size = max(1, -(-len(data) // max(parts, 1)))
        for i in range(0, len(data), size):
            yield data[i : i + size]
            await asyncio.sleep(delay)

    return generate()


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _sse(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def _completion(behaviour: Behaviour, body: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None}
    finish = "stop"
    if isinstance(behaviour, ToolCall):
        message["tool_calls"] = [
            {
                "id": "call_fake_0",
                "type": "function",
                "function": {"name": behaviour.name, "arguments": _arguments(behaviour)},
            }
        ]
        finish = "tool_calls"
    elif isinstance(behaviour, Text):
        message["content"] = behaviour.content
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "fake"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _error(status: int, message: str) -> JSONResponse:
    kind = "rate_limit_exceeded" if status == 429 else "server_error"
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": kind}},
        status_code=status,
    )
