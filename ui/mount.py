"""Serves the Gradio demo UI under /ui of the service's app, built after start-up.

Importing gradio takes seconds (more on a busy machine): building the UI inside `create_app`
would keep the REST API from answering that long. Instead /ui is mounted at once and the Gradio
app is built in the background; until it is ready, /ui answers 503 with a page that reloads
itself.

It is built once the voice gateway is past "loading": fastrtc's Stream (made by the voice
loader's thread) builds a gr.Blocks of its own, and gradio keeps the Blocks under construction in
process-wide state, so two built at once would mix their components up. With voice enabled that
also means gradio is already imported by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import sys
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from interview.runtime import Runtime
    from ui.gradio_app import DemoUI

log = structlog.get_logger(__name__)

UI_PATH = "/ui"
WAIT_POLL_SECONDS = 0.2
RELOAD_SECONDS = 2

# Gradio's page template reaches for the internet: a CDN script (iframe-resizer, only useful
# when embedded in Hugging Face Spaces) and preconnects to Google Fonts (unused with the system
# fonts theme). A demo that must work offline gets the page without them.
_EXTERNAL_HEAD = re.compile(
    rb'<link\s+rel="preconnect"[^>]*>'
    rb"|<script\s+src=\"https://[^\"]*\"[^>]*>\s*</script>"
    rb'|<link\s+rel="manifest"\s+href="/manifest\.json"\s*/?>',
    re.DOTALL,
)

STARTING_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{RELOAD_SECONDS}">
<title>Spool Interview: demo starting</title></head>
<body style="font-family: system-ui, sans-serif; margin: 3em;">
<h1>Spool Interview demo</h1><p>The demo UI is starting (the speech models load first).
This page reloads itself.</p></body></html>
"""


class GradioUI:
    """The ASGI app mounted at /ui: a 'starting' page until the Gradio app is ready."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.app: ASGIApp | None = None
        self.demo: DemoUI | None = None
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._lifespans = contextlib.AsyncExitStack()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._build())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._lifespans.aclose()

    async def _build(self) -> None:
        try:
            # Polled: the gateway's state is a plain attribute with no event to wait on.
            while self.runtime.voice.state == "loading":  # noqa: ASYNC110
                await asyncio.sleep(WAIT_POLL_SECONDS)
            host, demo = await asyncio.to_thread(_build_host, self.runtime)
            # Gradio's queue and its other start-up work run in the host's lifespan, which a
            # mounted app does not get from its parent: run it here, and close it on stop().
            await self._lifespans.enter_async_context(host.router.lifespan_context(host))
            self.app, self.demo = host, demo
            log.info("ui_ready", path=UI_PATH)
        except Exception as exc:  # the API keeps working without its demo page
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("ui_build_failed")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.app
        if app is None:
            await self._starting(scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] == "GET":
            await app(scope, receive, _without_external_head(send))
            return
        if scope["type"] == "http" and scope["path"].rstrip("/").endswith("/component_server"):
            with _quiet_stdout():
                await app(scope, receive, send)
            return
        await app(scope, receive, send)

    async def _starting(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1013})
            return
        from starlette.responses import HTMLResponse

        body = STARTING_PAGE
        if self.error is not None:
            body = body.replace("The demo UI is starting", "The demo UI failed to start")
        response = HTMLResponse(body, status_code=503, headers={"Retry-After": "2"})
        await response(scope, receive, send)


class _Discard(io.TextIOBase):
    def write(self, text: str) -> int:
        return len(text)


_quiet_depth = 0
_real_stdout: Any = None


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Discard print()s while a component call runs: gradio prints its content type on each
    one, and the service's stdout carries JSON log lines only (the log handler keeps its own
    reference to the real stream, so logging is unaffected).

    Overlapping calls on the event loop share one swap, restored when the last one ends.
    """
    global _quiet_depth, _real_stdout
    if _quiet_depth == 0:
        _real_stdout = sys.stdout
        sys.stdout = _Discard()
    _quiet_depth += 1
    try:
        yield
    finally:
        _quiet_depth -= 1
        if _quiet_depth == 0:
            sys.stdout = _real_stdout


def _build_host(runtime: Runtime) -> tuple[FastAPI, DemoUI]:
    # gradio's analytics are off from interview.no_telemetry, imported with the package.
    import gradio as gr

    from ui.gradio_app import build_blocks

    blocks, demo = build_blocks(runtime)
    host = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    # mount_gradio_app print()s the path; the service's stdout is JSON log lines only.
    with contextlib.redirect_stdout(io.StringIO()):
        gr.mount_gradio_app(host, blocks, path="", show_api=False)
    return host, demo


def _without_external_head(send: Send) -> Send:
    """Strip the internet-bound tags from HTML pages; other responses pass untouched."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers", []))
            if headers.get(b"content-type", b"").startswith(b"text/html"):
                start = message
                return
            await send(message)
            return
        if start is None or message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = _EXTERNAL_HEAD.sub(b"", b"".join(chunks))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


def mount_ui(app: FastAPI, runtime: Runtime) -> GradioUI:
    """Mount the demo UI at /ui and build it once the app has started."""
    ui = GradioUI(runtime)
    app.mount(UI_PATH, ui)
    parent = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(target: Any) -> AsyncIterator[Any]:
        async with parent(target) as state:
            ui.start()
            try:
                yield state
            finally:
                await ui.stop()

    app.router.lifespan_context = lifespan
    app.state.ui = ui
    return ui
