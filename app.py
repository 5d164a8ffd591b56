"""Spool Interview: build the FastAPI application, or run it with `python app.py`.

`python app.py openapi` prints its /openapi.json instead, as ui/web/openapi.json keeps it (the web
client's types are generated from that copy; `make openapi` refreshes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType

import structlog
import uvicorn
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from sse_starlette.sse import AppStatus
from starlette.types import ASGIApp, Receive, Scope, Send

from interview.api import (
    BodySizeLimitMiddleware,
    HeaderSizeLimitMiddleware,
    JSONErrorCORSMiddleware,
    RequestBodyTimeoutMiddleware,
    RequestLogMiddleware,
    install_error_handlers,
    router,
    voice_router,
)
from interview.api.errors import error_response
from interview.api.limits import Limits
from interview.config import ConfigError, Environment, Settings, get_settings
from interview.deploy.draining import DrainingConnections, Traffic
from interview.deploy.task_protection import task_protection
from interview.logs import configure_logging
from interview.runtime import Runtime
from ui.demo_page import mount_demo
from ui.gradio_host import UI_PATH, demo_ui

API_PREFIX = "/api/interview"
LOCALHOST_ORIGINS = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$"
# What a browser may send across origins; API Gateway's CORS in the CDK stack must allow the
# same (tests/cdk/test_api.py). DELETE: the candidate erases an interview; Idempotency-Key: a
# typed answer's retry (ui/web's client) must pass the preflight.
CORS_METHODS = ["GET", "POST", "DELETE", "OPTIONS"]
CORS_HEADERS = ["Authorization", "Content-Type", "Last-Event-ID", "Idempotency-Key"]
# What opens a new interview or voice connection: refused while draining.
DRAINING_REFUSED = re.compile(re.escape(API_PREFIX) + r"/(start|[^/]+/rtc/offer)/?")
DRAINING_RETRY_AFTER_SECONDS = 5
# How often the drain looks at what it waits for (live calls, requests in flight).
DRAIN_POLL_SECONDS = 0.1

log = structlog.get_logger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    runtime = Runtime.build(settings)
    ui = demo_ui(runtime)
    traffic = Traffic()
    # On ECS (ECS_AGENT_URI set): the task is protected from scale-in while calls are live.
    protection = task_protection(settings, live=runtime.voice.live_connections)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            async with contextlib.AsyncExitStack() as stack:
                if protection is not None:
                    await stack.enter_async_context(protection.running())
                await stack.enter_async_context(ui.running())
                yield
        finally:
            await runtime.stop()

    # FastAPIOffline serves the /docs and /redoc assets itself instead of from a CDN.
    app = FastAPIOffline(
        title="Spool Interview",
        summary="A self-hostable AI voice interviewer.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.traffic = traffic
    # Rate limits and the event-stream cap (interview/api/limits.py), on the service's database.
    app.state.limits = Limits.build(settings, runtime.store)
    install_error_handlers(app)
    app.include_router(router, prefix=API_PREFIX, tags=["interview"])
    app.include_router(voice_router, prefix=API_PREFIX, tags=["voice"])
    # The React demo at /demo (ui/web, built by `make web`).
    mount_demo(app)
    # The Gradio demo UI at /ui, built in the background once the app has started.
    app.mount(UI_PATH, ui)

    # Added last runs first: logging sees every request, the body's size and time limits guard
    # the routes.
    # Draining refusals run inside CORS, so a browser can read the 503.
    app.add_middleware(RefuseWhileDraining, runtime=runtime)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestBodyTimeoutMiddleware, seconds=settings.request_body_timeout_seconds)
    app.add_middleware(HeaderSizeLimitMiddleware, max_bytes=settings.max_header_bytes)
    app.add_middleware(
        JSONErrorCORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_origin_regex=LOCALHOST_ORIGINS
        if settings.environment is Environment.development
        else None,
        allow_methods=CORS_METHODS,
        allow_headers=CORS_HEADERS,
        # The browser client sends credentials: "include" (for an optional load balancer
        # stickiness cookie). Credentials go only to named origins: with "*"
        # Starlette would echo any origin, letting every site make credentialed calls.
        allow_credentials="*" not in settings.cors_origins,
        # A 503's Retry-After (draining, at capacity, database unavailable) tells the client
        # when to retry; cross-origin it is readable only when exposed.
        expose_headers=["Retry-After"],
        max_age=600,
    )
    # Every response, refusals and preflights included: counted, and closing while draining.
    app.add_middleware(DrainingConnections, draining=lambda: runtime.draining, traffic=traffic)
    app.add_middleware(RequestLogMiddleware)
    return app


class RefuseWhileDraining:
    """While the server drains, a new interview or voice connection gets 503 with Retry-After.

    The client retries and lands on an instance that stays; the interviews already running here
    go on (answers, transcript, events) until they finish or the drain ends.
    """

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.runtime.draining
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and DRAINING_REFUSED.fullmatch(scope["path"])
        ):
            response = error_response(
                503,
                "draining",
                "This server is shutting down; retry shortly and another one will take it.",
                headers={"Retry-After": str(DRAINING_RETRY_AFTER_SECONDS)},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class DrainingServer(uvicorn.Server):
    """uvicorn that drains on the first stop signal before it shuts down, so that neither a live
    interview nor an accepted request is cut.

    The first signal turns health to 503 ("draining") and refuses new interviews; the server
    keeps listening and serving: at least DRAIN_MIN_SECONDS (a load balancer takes it out of
    rotation meanwhile; ECS has deregistered the task before it sends SIGTERM), while live voice
    interviews go on, at most DRAIN_MAX_SECONDS (then those still live are closed: their turns
    are committed, their sessions resume elsewhere), and until the requests in flight are
    answered. Each response meanwhile closes its connection. Then the open event streams end
    cleanly and uvicorn stops listening, finishes what is left and runs the lifespan shutdown,
    all within SHUTDOWN_GRACE_SECONDS of the signal (ECS's stopTimeout must be longer: it kills
    the task then). A second signal stops at once.
    """

    def __init__(
        self, config: uvicorn.Config, runtime: Runtime, traffic: Traffic | None = None
    ) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.traffic = traffic or Traffic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain: asyncio.Task[None] | None = None
        self._drain_started = False
        # The drain ends the event streams itself, cleanly: sse-starlette's own reaction to a
        # signal would cancel them mid-response, and its flag, once set, is process-wide (every
        # later stream would end at once).
        AppStatus.disable_automatic_graceful_drain()  # type: ignore[no-untyped-call]

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.runtime.draining = True
        if self._drain_started or self._loop is None or not self.started:
            super().handle_exit(sig, frame)  # a second signal, or one during start-up
            return
        self._drain_started = True
        # A signal handler may interrupt the loop anywhere: hand the drain to it safely.
        self._loop.call_soon_threadsafe(self._begin_drain, sig, frame)

    def _begin_drain(self, sig: int, frame: FrameType | None) -> None:
        self._drain = asyncio.get_running_loop().create_task(self._drain_then_exit(sig, frame))

    async def _drain_then_exit(self, sig: int, frame: FrameType | None) -> None:
        loop = asyncio.get_running_loop()
        settings = self.runtime.settings
        started = loop.time()
        deadline = started + settings.shutdown_grace_seconds
        # The drain's part of the grace period; the rest is for the requests still in flight
        # (half of it) and the lifespan shutdown (reports, database).
        limit = started + settings.drain_limit_seconds
        serve_until = min(started + settings.drain_min_seconds, limit)
        self.runtime.stop_by = deadline
        try:
            await self.runtime.drain(voice_until=limit)
            # Then its minimum, and the requests in flight; polled, like the live calls.
            while loop.time() < limit:
                if loop.time() >= serve_until and not self.traffic.in_flight:
                    break
                await asyncio.sleep(DRAIN_POLL_SECONDS)
            streams = await self.traffic.end_streams()
            log.info(
                "stopping_http",
                drained_s=round(loop.time() - started, 1),
                in_flight=self.traffic.in_flight,
                event_streams_ended=streams,
            )
        except Exception:
            log.exception("drain_failed")
        finally:
            remaining = max(0.0, deadline - loop.time())
            self.config.timeout_graceful_shutdown = max(1, math.floor(remaining / 2))
            super().handle_exit(sig, frame)


def openapi_document(settings: Settings) -> str:
    """The app's /openapi.json, formatted as the committed copy ui/web/openapi.json."""
    return json.dumps(create_app(settings).openapi(), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    try:
        settings = get_settings()
    except ConfigError as exc:
        sys.exit(str(exc))
    if sys.argv[1:] == ["openapi"]:
        # The document does not depend on the database: an in-memory one touches no file.
        sys.stdout.write(
            openapi_document(settings.model_copy(update={"database_url": "sqlite://"}))
        )
        return
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        # Behind the ALB the client address and scheme come from X-Forwarded-* headers.
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        # Behind a load balancer, longer than its idle timeout (HTTP_KEEP_ALIVE_SECONDS).
        timeout_keep_alive=settings.http_keep_alive_seconds,
    )
    DrainingServer(config, app.state.runtime, app.state.traffic).run()


if __name__ == "__main__":
    main()
