"""FastRTC's Gradio WebRTC component, signalled through the service's VoiceGateway.

The stock component runs its own connections (not counted in the service's limits, not keyed by
interview session). This one keeps the component's browser side (microphone, playback, the
record button) and hands its three server calls to the same gateway the REST routes use: the
offer becomes `VoiceGateway.offer` for the page's interview session, so the connection is keyed
by that session id and runs the same pipeline (greeting first, turn detection, speech-to-text,
the interviewer, speech) under the same capacity limit.

The browser names its connection with a random `webrtc_id`; the page's Gradio session hash (sent
with every component call) says which interview it belongs to.

While the service drains (a stop signal, app.py), a new connection is refused here as the REST
route's offer is (RefuseWhileDraining): these calls reach the gateway through Gradio's own
routes, which that middleware does not see. ICE candidates and the stop button still work for
connections made before the drain.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Protocol

import gradio as gr
import structlog
from fastrtc import WebRTC
from gradio.components.base import server

from interview.access import SessionNotFound
from interview.sessions import InterviewService, SessionClosed
from interview.store import SessionRow
from interview.voice.errors import (
    AlreadyConnected,
    AtCapacity,
    InvalidCandidate,
    InvalidOffer,
    NoConnection,
    VoiceUnavailable,
)
from interview.voice.gateway import VoiceGateway

log = structlog.get_logger(__name__)

MAX_PEERS = 256


class DrainState(Protocol):
    """The service's runtime, as far as this component needs it (interview.runtime.Runtime)."""

    @property
    def draining(self) -> bool: ...


class PageSessions(Protocol):
    """Which interview a page (by its Gradio session hash) is running, and its voice notes;
    `runtime` says whether the service is draining (ui.gradio_app.DemoUI has all three)."""

    @property
    def runtime(self) -> DrainState: ...

    def session_id_for(self, session_hash: str) -> str | None: ...

    def note_voice(self, session_hash: str, message: str | None) -> None: ...


class GatewaySignaling:
    """The server side of a stock `WebRTC` component, attached with `attach(component)`.

    Not a subclass: gradio writes a `.pyi` stub next to the source of every Component subclass
    when the class is defined (a read-only install would fail to import it).
    """

    def __init__(
        self, gateway: VoiceGateway, service: InterviewService, pages: PageSessions
    ) -> None:
        self.gateway = gateway
        self.service = service
        self.pages = pages
        # The browser's connection id -> interview session id, for its ICE candidates and stop.
        self.peers: OrderedDict[str, str] = OrderedDict()

    def attach(self, component: WebRTC) -> WebRTC:
        """Route the component's server calls here (Gradio looks them up on the instance)."""
        component.turn = self.turn  # type: ignore[method-assign]
        component.offer = self.offer  # type: ignore[method-assign]
        component.quit_output_stream = self.quit_output_stream  # type: ignore[method-assign]
        return component

    @server
    async def turn(self, _: Any, request: gr.Request) -> dict[str, Any]:
        """The browser's RTCConfiguration: the session's own TURN credentials, as /ice-servers."""
        session = await self._page_session(request)
        if isinstance(session, str):
            return {"error": session}
        ice = self.gateway.ice_servers(session)
        return {
            "iceServers": [
                {"urls": s.urls, "username": s.username, "credential": s.credential}
                for s in ice.servers
            ]
        }

    @server
    async def offer(self, body: dict[str, Any], request: gr.Request) -> Any:
        webrtc_id = str(body.get("webrtc_id", ""))
        if body.get("type") == "ice-candidate":
            return await self._candidate(webrtc_id, body.get("candidate") or {})
        hash_ = await _session_hash(request)
        if self.pages.runtime.draining:
            # As RefuseWhileDraining answers POST /{id}/rtc/offer: the page's interview stays
            # open (typing goes on); voice is for a server that stays.
            return self._refused(
                hash_,
                "draining",
                "This server is shutting down, so voice cannot start here: type your answers, "
                "or retry shortly.",
            )
        session = await self._page_session(request)
        if isinstance(session, str):
            return _failed("no_interview", session)
        try:
            answer = await self.gateway.offer(session, str(body.get("sdp", "")), "offer")
        except AlreadyConnected:
            return self._refused(hash_, "connection_already_exists", "Voice is already connected.")
        except AtCapacity as exc:
            return self._refused(
                hash_,
                "concurrency_limit_reached",
                f"Every voice slot is in use ({exc}); type your answers or try again shortly.",
            )
        except VoiceUnavailable as exc:
            return self._refused(hash_, "voice_unavailable", f"Voice is {exc.state}: {exc.detail}")
        except InvalidOffer as exc:
            return self._refused(hash_, "invalid_offer", f"The browser's offer was refused: {exc}")
        self.peers[webrtc_id] = session.id
        while len(self.peers) > MAX_PEERS:
            self.peers.popitem(last=False)
        self.pages.note_voice(hash_, None)
        return {"sdp": answer.sdp, "type": answer.type}

    @server
    async def quit_output_stream(self, body: dict[str, Any]) -> dict[str, bool]:
        """The page's stop button: close the interview's voice connection (it can reconnect)."""
        session_id = self.peers.pop(str(body.get("webrtc_id", "")), None)
        if session_id is not None:
            await self.gateway.close(session_id)
        return {"success": True}

    async def _candidate(self, webrtc_id: str, candidate: dict[str, Any]) -> dict[str, Any]:
        session_id = self.peers.get(webrtc_id)
        if session_id is None:
            return _failed("unknown_connection", "no connection for this id")
        try:
            session = await self.service.open_session(session_id)
            await self.gateway.add_ice_candidate(
                session,
                str(candidate.get("candidate", "")),
                candidate.get("sdpMid"),
                candidate.get("sdpMLineIndex"),
            )
        except (SessionClosed, SessionNotFound, NoConnection):
            return _failed("connection_closed", "the connection is closed")
        except InvalidCandidate as exc:
            return _failed("invalid_candidate_format", str(exc))
        return {"status": "success"}

    async def _page_session(self, request: gr.Request) -> SessionRow | str:
        """The page's open interview, or why there is none (a message for the page)."""
        session_id = self.pages.session_id_for(await _session_hash(request))
        if session_id is None:
            return "Start an interview first, then press the microphone button."
        try:
            return await self.service.open_session(session_id)
        except (SessionClosed, SessionNotFound):
            return "This interview has ended: start a new one to talk."

    def _refused(self, session_hash: str, code: str, message: str) -> dict[str, Any]:
        log.info("ui_voice_refused", reason=code)
        self.pages.note_voice(session_hash, message)
        return _failed(code, message)


def _failed(code: str, message: str) -> dict[str, Any]:
    # fastrtc's refusal shape: the component shows an error for any "failed" status.
    return {"status": "failed", "meta": {"error": code, "message": message}}


async def _session_hash(request: Any) -> str:
    """The page's Gradio session hash.

    Gradio hands component server functions the raw Starlette request, whose JSON body (already
    read and cached by Gradio) carries `session_hash`; event handlers get a gr.Request with it.
    """
    hash_ = getattr(request, "session_hash", None)
    if hash_:
        return str(hash_)
    try:
        body = await request.json()
    except (json.JSONDecodeError, AttributeError, RuntimeError):
        return ""
    return str(body.get("session_hash") or "") if isinstance(body, dict) else ""
