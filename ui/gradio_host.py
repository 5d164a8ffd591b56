"""The one door into Gradio and fastrtc's Gradio component: serves a gr.Blocks at /ui of the app.

Every use of a Gradio internal, and of fastrtc's `WebRTC` component, is in this module; each is
checked by tests/ui/test_gradio_host_contract.py, so an upgrade fails there with its name.
ui/gradio_app.py builds the page with the public `gr.*` API, and ui/voice_signaling.py decides
what the microphone's calls do (VoiceSignaling below). What this module does, the internal it
relies on where no front door exists, and the upstream change that would remove it:

- Built after start-up. Importing gradio takes seconds (more on a busy machine), so /ui is
  mounted at once and answers 503 with a page that reloads itself until the Blocks are built in
  the background. The demo's are built once the voice gateway is past "loading": fastrtc's Stream
  (made by the voice loader's thread) builds a gr.Blocks of its own, and gradio keeps the Blocks
  under construction in process-wide state, so two built at once would mix their components up.
- Started and stopped by the app's own lifespan (`GradioHost.running()`). `gr.mount_gradio_app`,
  the front door, puts gradio's start-up (its queue) into the lifespan of the app it mounts on;
  ours has started by then, so the Blocks get a host app of their own whose lifespan
  (`router.lifespan_context`) is entered once built and left on stop. Upstream: a public
  start/stop for Blocks mounted on a running app.
- A page without internet-bound head tags. Gradio's page template
  (gradio/templates/frontend/index.html) preconnects to Google Fonts (unused with the system fonts
  theme), loads the iframe-resizer script from cdnjs (for embedding in Hugging Face Spaces) and
  links a manifest at the server's root; `gr.Blocks(head=...)` can only add tags. HTML responses
  are rewritten without them (gradio compresses only paths with a file extension, not the page).
  Upstream: a template option to leave them out (gradio 5.50 has none).
- gradio's print()s kept off stdout, which carries JSON log lines only: gradio.routes print()s on
  every component call ("content_type ...", gradio issue #12030) and in mount_gradio_app.
  `print` is shadowed in that module's globals by one that logs at debug level; other code's
  print()s are untouched. Upstream: #12030 (a logger instead of print).
- The voice component (`voice_component`): fastrtc's `WebRTC` keeps its browser side (microphone,
  playback, the Talk button) while its three server functions (`turn`, `offer`,
  `quit_output_stream`) are replaced on the instance by ones that call our VoiceSignaling, in
  fastrtc's JSON shapes (a refusal is `{"status": "failed", "meta": {"error": code}}`). Gradio's
  component_server route calls the instance attribute named by the call if it carries the
  `@server` marker (gradio.components.base.server). Not a subclass: gradio writes a `.pyi` stub
  next to the source of every Component subclass when the class is defined (a read-only install
  would fail to import it). Upstream: fastrtc's WebRTC taking its signaling as a parameter.
- The page of a component call: gradio hands component server functions the raw Starlette
  request, not a gr.Request with its `session_hash`; the hash is read from the call's JSON body
  (already read and cached by gradio). Upstream: component_server building a gr.Request as event
  handlers get.
"""

# No `from __future__ import annotations` here: gradio finds the request parameter of a server
# function by its annotation (`gr.Request`, imported lazily below), so it must be a real class.

import asyncio
import builtins
import contextlib
import importlib
import json
import re
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import structlog
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.responses import HTMLResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    import gradio as gr
    from gradio.components import Component

    from interview.runtime import Runtime

log = structlog.get_logger(__name__)

UI_PATH = "/ui"
READY_POLL_SECONDS = 0.2
RELOAD_SECONDS = 2

# The tags of Gradio's page template that reach for the internet (see the module docstring).
EXTERNAL_HEAD = re.compile(
    rb'<link\s+rel="preconnect"[^>]*>'
    rb"|<script\s+src=\"https://[^\"]*\"[^>]*>\s*</script>"
    rb'|<link\s+rel="manifest"\s+href="/manifest\.json"\s*/?>',
    re.DOTALL,
)
# The gradio modules whose print()s go to the log instead of stdout.
PRINTING_MODULES = ("gradio.routes",)
# Any connection id but fastrtc's placeholder: with the placeholder, its page fetches a
# notification sound from huggingface.co when it mounts.
MIC_VALUE = {"textbox": "", "webrtc_id": "spool-interview"}

STARTING_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{RELOAD_SECONDS}">
<title>Spool Interview: demo starting</title></head>
<body style="font-family: system-ui, sans-serif; margin: 3em;">
<h1>Spool Interview demo</h1><p>The demo UI is starting (the speech models load first).
This page reloads itself.</p></body></html>
"""


# The voice component's seam: what its server calls ask of us, in our own types.


@dataclass(frozen=True)
class Refusal:
    """Why a call of the microphone was not done: a code and a message for the page."""

    code: str
    message: str


@dataclass(frozen=True)
class IceCandidate:
    """One ICE candidate the browser trickled, as RTCIceCandidateInit names its fields."""

    candidate: str
    sdp_mid: str | None
    sdp_mline_index: int | None


class VoiceSignaling(Protocol):
    """Where the voice component's server calls go (ui.voice_signaling.GatewaySignaling).

    `page` is the Gradio session hash of the browser tab; `connection` the id the browser gave
    its peer connection."""

    async def rtc_configuration(self, page: str) -> dict[str, Any] | Refusal: ...

    async def offer(self, page: str, connection: str, sdp: str) -> dict[str, str] | Refusal: ...

    async def candidate(self, connection: str, candidate: IceCandidate) -> Refusal | None: ...

    async def stop(self, connection: str) -> None: ...


class _CandidateInit(BaseModel):
    candidate: str = ""
    sdpMid: str | None = None
    sdpMLineIndex: int | None = Field(default=None, ge=0)


class _CandidateBody(BaseModel):
    type: Literal["ice-candidate"]
    webrtc_id: str
    candidate: _CandidateInit


class _OfferBody(BaseModel):
    type: Literal["offer"]
    webrtc_id: str
    sdp: str


class _StopBody(BaseModel):
    webrtc_id: str


_SIGNAL: TypeAdapter[_CandidateBody | _OfferBody] = TypeAdapter(_CandidateBody | _OfferBody)
_STOP = TypeAdapter(_StopBody)
_Body = TypeVar("_Body")


def voice_component(
    signaling: VoiceSignaling, *, label: str, elem_id: str, button_labels: dict[str, str]
) -> "Component":
    """A microphone for the page (fastrtc's WebRTC, audio both ways) signalled by `signaling`."""
    import gradio as gr
    from fastrtc import WebRTC
    from gradio.components.base import server

    component = WebRTC(
        value=MIC_VALUE,  # type: ignore[arg-type]  # fastrtc types it None; its page takes this
        label=label,
        mode="send-receive",
        modality="audio",
        elem_id=elem_id,
        button_labels=button_labels,
        full_screen=False,
    )

    @server
    async def turn(_: Any, request: gr.Request) -> dict[str, Any]:
        """The browser's RTCConfiguration; fastrtc's page shows `error` when there is one."""
        answer = await signaling.rtc_configuration(await _page_of(request))
        return {"error": answer.message} if isinstance(answer, Refusal) else answer

    @server
    async def offer(body: Any, request: gr.Request) -> dict[str, Any]:
        """The browser's offer, or one of its ICE candidates (fastrtc sends both here)."""
        call = _parse(_SIGNAL, body)
        if isinstance(call, _CandidateBody):
            init = call.candidate
            ice = IceCandidate(init.candidate, init.sdpMid, init.sdpMLineIndex)
            refused = await signaling.candidate(call.webrtc_id, ice)
            return {"status": "success"} if refused is None else _failed(refused)
        answer = await signaling.offer(await _page_of(request), call.webrtc_id, call.sdp)
        return _failed(answer) if isinstance(answer, Refusal) else answer

    @server
    async def quit_output_stream(body: Any) -> dict[str, bool]:
        """The page's stop button."""
        await signaling.stop(_parse(_STOP, body).webrtc_id)
        return {"success": True}

    # Gradio's component_server calls the instance's attribute of the name the page asks for.
    for function in (turn, offer, quit_output_stream):
        setattr(component, function.__name__, function)
    return component


def _parse(adapter: TypeAdapter[_Body], body: Any) -> _Body:
    try:
        return adapter.validate_python(body)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise HTTPException(400, f"Malformed voice signaling message: {detail}") from exc


def _failed(refusal: Refusal) -> dict[str, Any]:
    # fastrtc's refusal shape: its page shows an error for any "failed" status.
    return {"status": "failed", "meta": {"error": refusal.code, "message": refusal.message}}


async def _page_of(request: Any) -> str:
    """The Gradio session hash of a component call, from its JSON body."""
    try:
        body = await request.json()
    except (json.JSONDecodeError, AttributeError, RuntimeError):
        return ""
    return str(body.get("session_hash") or "") if isinstance(body, dict) else ""


# Serving the Blocks at /ui.


class GradioHost:
    """The ASGI app mounted at /ui: a 'starting' page until the Blocks are built and started.

    `build` runs in a worker thread once `ready_to_build()` holds; `running()` is entered by the
    app's lifespan."""

    def __init__(
        self,
        build: Callable[[], "gr.Blocks"],
        ready_to_build: Callable[[], bool] = lambda: True,
    ) -> None:
        self.build = build
        self.ready_to_build = ready_to_build
        self.app: ASGIApp | None = None
        self.error: str | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Build and serve the Blocks in the background while the app runs."""
        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._serve(stop))
        try:
            yield
        finally:
            if self.app is None:
                task.cancel()  # still building: nothing of gradio's to shut down yet
            stop.set()
            # Its own cancellation is its result; a cancellation of the app's stop is not.
            await asyncio.gather(task, return_exceptions=True)

    async def _serve(self, stop: asyncio.Event) -> None:
        try:
            # Polled: the voice gateway's state is a plain attribute with no event to wait on.
            while not self.ready_to_build():  # noqa: ASYNC110
                await asyncio.sleep(READY_POLL_SECONDS)
            host = await asyncio.to_thread(self._host)
            # Gradio's queue and its other start-up work run in the host's lifespan.
            async with host.router.lifespan_context(host):
                self.app = host
                log.info("ui_ready", path=UI_PATH)
                await stop.wait()
                self.app = None
        except Exception as exc:  # the API keeps working without its demo page
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("ui_build_failed")

    def _host(self) -> FastAPI:
        # gradio's analytics are off from interview.no_telemetry, imported with the package.
        import gradio as gr

        quiet_gradio_prints()
        blocks = self.build()
        host = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        gr.mount_gradio_app(host, blocks, path="", show_api=False)
        return host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.app
        if app is None:
            await self._starting(scope, receive, send)
        elif scope["type"] == "http" and scope["method"] == "GET":
            await app(scope, receive, _without_external_head(send))
        else:
            await app(scope, receive, send)

    async def _starting(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1013})
            return
        body = STARTING_PAGE
        if self.error is not None:
            body = body.replace("The demo UI is starting", "The demo UI failed to start")
        headers = {"Retry-After": str(RELOAD_SECONDS)}
        await HTMLResponse(body, status_code=503, headers=headers)(scope, receive, send)


def demo_ui(runtime: "Runtime") -> GradioHost:
    """The demo UI of ui/gradio_app.py for `runtime`, built once the voice gateway has loaded."""

    def build() -> "gr.Blocks":
        from ui.gradio_app import build_blocks

        return build_blocks(runtime)[0]

    return GradioHost(build, ready_to_build=lambda: runtime.voice.state != "loading")


def _print_to_log(*values: object, sep: str | None = " ", **options: Any) -> None:
    """print() for gradio's modules: to the log when meant for stdout, else as asked."""
    if options.get("file") not in (None, sys.stdout):
        builtins.print(*values, sep=sep, **options)
        return
    text = (" " if sep is None else sep).join(map(str, values))
    # Looked up per call: a logger bound once would miss a reconfiguration (tests capture logs).
    structlog.get_logger(__name__).debug("gradio_print", text=text)


def quiet_gradio_prints() -> None:
    """Send the print()s of gradio's serving modules to the log (idempotent)."""
    for name in PRINTING_MODULES:
        # A module's own global shadows the builtin for the code of that module only.
        vars(importlib.import_module(name))["print"] = _print_to_log


def _without_external_head(send: Send) -> Send:
    """Strip the internet-bound tags from HTML pages; other responses pass untouched."""
    start: Message | None = None
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            content_type = dict(message.get("headers", [])).get(b"content-type", b"")
            if content_type.startswith(b"text/html"):
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
        body = EXTERNAL_HEAD.sub(b"", b"".join(chunks))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped
