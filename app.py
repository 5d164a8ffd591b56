"""Spool Interview: build the FastAPI application, or run it with `python app.py`."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType

import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from interview.api import (
    BodySizeLimitMiddleware,
    RequestLogMiddleware,
    install_error_handlers,
    router,
    voice_router,
)
from interview.config import ConfigError, Environment, Settings, get_settings
from interview.logs import configure_logging
from interview.runtime import Runtime
from ui.demo_page import mount_demo
from ui.mount import mount_ui

API_PREFIX = "/api/interview"
LOCALHOST_ORIGINS = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level)
    runtime = Runtime.build(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
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
    install_error_handlers(app)
    app.include_router(router, prefix=API_PREFIX, tags=["interview"])
    app.include_router(voice_router, prefix=API_PREFIX, tags=["voice"])
    # The React demo at /demo (ui/web, built by `make web`).
    mount_demo(app)
    # The Gradio demo UI at /ui, built in the background once the app has started.
    mount_ui(app, runtime)

    # Added last runs first: logging sees every request, the size limit guards the routes.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_origin_regex=LOCALHOST_ORIGINS
        if settings.environment is Environment.development
        else None,
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        max_age=600,
    )
    app.add_middleware(RequestLogMiddleware)
    return app


class DrainingServer(uvicorn.Server):
    """uvicorn, with health turning 503 ("draining") the moment a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self.runtime = runtime

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.runtime.draining = True
        super().handle_exit(sig, frame)


def main() -> None:
    try:
        settings = get_settings()
    except ConfigError as exc:
        sys.exit(str(exc))
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
    )
    DrainingServer(config, app.state.runtime).run()


if __name__ == "__main__":
    main()
