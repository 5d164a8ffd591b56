"""A local HTTP server that answers as the ECS agent's task scale-in protection endpoint does.

`$ECS_AGENT_URI/task-protection/v1/state` (ECS_AGENT_URI is `http://<agent>/api/<id>`): PUT
`{"ProtectionEnabled": bool, "ExpiresInMinutes": n}` sets the task's protection, GET reads it.
As the agent (amazon-ecs-agent, tmds/handlers/taskprotection/v1), it refuses unknown fields and
a missing ProtectionEnabled with 400, passes on ECS's refusal of an ExpiresInMinutes outside 1 to
2880, defaults to 120 minutes, and lets a protection lapse when it expires. Its answers:
`{"protection": {"ExpirationDate", "ProtectionEnabled", "TaskArn"}}`, `{"failure": {"Arn",
"Detail", "Reason"}}` (HTTP 200, ECS refused) and `{"error": {"Arn", "Code", "Message"}}`.

Tests make it fail on purpose: `fail_next()` (a 5xx error, a `failure`, an answer slower than
the client waits, a body that is not JSON), `stop()`/`start()` (connection refused meanwhile).
Every request is recorded.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from harness.ports import free_port

TASK_ID = "0f9c2b7e5d6a4c1b8e3f2a1d9c8b7a6e"
TASK_ARN = f"arn:aws:ecs:eu-west-1:123456789012:task/spool-cluster/{TASK_ID}"
DEFAULT_MINUTES = 120

Fault = Literal["error", "failure", "slow", "garbage"]


@dataclass
class Call:
    """One request the agent received, and the status it answered."""

    at: float  # time.monotonic()
    method: str
    body: dict[str, Any] | None
    status: int = 0


@dataclass
class _State:
    enabled: bool = False
    expires_at: datetime | None = None
    calls: list[Call] = field(default_factory=list)
    faults: list[tuple[Fault, float]] = field(default_factory=list)


class FakeEcsAgent:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._state = _State()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    @property
    def uri(self) -> str:
        """What ECS puts in ECS_AGENT_URI."""
        return f"http://127.0.0.1:{self.port}/api/{TASK_ID}-1234567890"

    def start(self) -> None:
        agent = self

        class Handler(_Handler):
            owner = agent

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and drop open connections: requests fail until start()."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FakeEcsAgent:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # what the tests look at and arrange

    @property
    def protected(self) -> bool:
        with self._lock:
            return self._current()[0]

    @property
    def expires_at(self) -> datetime | None:
        with self._lock:
            return self._current()[1]

    def calls(self, method: str | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self._state.calls if method is None or c.method == method]

    def puts(self) -> list[Call]:
        return self.calls("PUT")

    def fail_next(self, count: int, fault: Fault, delay: float = 0.0) -> None:
        """The next `count` requests fail this way ("slow": answered after `delay` seconds)."""
        with self._lock:
            self._state.faults.extend([(fault, delay)] * count)

    def expire_now(self) -> None:
        """The protection lapses, as ECS clears it at ExpirationDate."""
        with self._lock:
            self._state.expires_at = datetime.now(UTC)

    def wait_for(self, check: Callable[[FakeEcsAgent], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check(self):
                return True
            time.sleep(0.05)
        return check(self)

    # what the handler calls

    def _current(self) -> tuple[bool, datetime | None]:
        state = self._state
        if state.enabled and state.expires_at is not None and state.expires_at <= datetime.now(UTC):
            state.enabled, state.expires_at = False, None
        return state.enabled, state.expires_at

    def _answer(self, method: str, raw: bytes | None) -> tuple[int, bytes, float]:
        """(status, body, seconds to wait before answering) for one request."""
        with self._lock:
            call = Call(at=time.monotonic(), method=method, body=None)
            self._state.calls.append(call)
            fault = self._state.faults.pop(0) if self._state.faults else None
            status, answer, delay = self._handle(method, raw, call, fault)
            call.status = status
        body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        return status, body, delay

    def _handle(
        self, method: str, raw: bytes | None, call: Call, fault: tuple[Fault, float] | None
    ) -> tuple[int, dict[str, Any] | bytes, float]:
        if method == "PUT":
            try:
                body = json.loads(raw or b"")
            except ValueError:
                body = None
            call.body = body if isinstance(body, dict) else None
            refused = _invalid(body)
            if refused is not None:
                return 400, _error("InvalidParameterException", refused), 0.0
        if fault is not None:
            kind, delay = fault
            if kind == "error":
                return 500, _error("ServerException", "the ECS API failed", request_id=True), 0.0
            if kind == "failure":
                failure = {"Arn": TASK_ARN, "Detail": None, "Reason": "TASK_NOT_VALID"}
                return 200, {"failure": failure}, 0.0
            if kind == "garbage":
                return 502, b"<html>Bad Gateway</html>", 0.0
            # "slow": the request is carried out, but answered too late for the client.
            return (*self._apply(method, call.body), delay)
        return (*self._apply(method, call.body), 0.0)

    def _apply(self, method: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        state = self._state
        if method == "PUT" and body is not None:
            state.enabled = bool(body["ProtectionEnabled"])
            minutes = body.get("ExpiresInMinutes") or DEFAULT_MINUTES
            state.expires_at = (
                datetime.now(UTC) + timedelta(minutes=minutes) if state.enabled else None
            )
        enabled, expires_at = self._current()
        return 200, {
            "protection": {
                # Go's encoding of a time.Time: RFC 3339 with nanoseconds.
                "ExpirationDate": expires_at.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
                if expires_at
                else None,
                "ProtectionEnabled": enabled,
                "TaskArn": TASK_ARN,
            }
        }


def _invalid(body: object) -> str | None:
    """Why the agent (or ECS behind it) refuses this PUT body, or None."""
    if not isinstance(body, dict) or set(body) - {"ProtectionEnabled", "ExpiresInMinutes"}:
        return "UpdateTaskProtection: failed to decode request"
    enabled = body.get("ProtectionEnabled")
    if not isinstance(enabled, bool):
        return "Invalid request: does not contain 'ProtectionEnabled' field"
    minutes = body.get("ExpiresInMinutes")
    if minutes is not None and (
        not isinstance(minutes, int) or isinstance(minutes, bool) or not 1 <= minutes <= 2880
    ):
        return "expiresInMinutes must be between 1 and 2880"
    return None


def _error(code: str, message: str, request_id: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {"error": {"Arn": TASK_ARN, "Code": code, "Message": message}}
    if request_id:
        answer["requestID"] = "5d4c3b2a-1f0e-4d9c-8b7a-6f5e4d3c2b1a"
    return answer


class _Handler(BaseHTTPRequestHandler):
    owner: FakeEcsAgent
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        with self.owner._lock:
            self.owner._connections.add(self.connection)

    def finish(self) -> None:
        with self.owner._lock:
            self.owner._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else None
        prefix = f"/api/{TASK_ID}-"
        if not (self.path.startswith(prefix) and self.path.endswith("/task-protection/v1/state")):
            self._send(404, b"404 page not found\n", "text/plain")
            return
        status, body, delay = self.owner._answer(method, raw)
        if delay:
            time.sleep(delay)
        self._send(status, body, "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting ("slow")

    def log_message(self, format: str, *args: Any) -> None:
        pass
