"""What the Gradio page's microphone may do: its calls, answered by the service's VoiceGateway.

The stock fastrtc component runs its own connections (not counted in the service's limits, not
keyed by interview session). ui/gradio_host.py keeps its browser side and hands its calls here
(the VoiceSignaling seam): the offer becomes `VoiceGateway.offer` for the page's interview
session, so the connection is keyed by that session id and runs the same pipeline (greeting
first, turn detection, speech-to-text, the interviewer, speech) under the same capacity limit.

The page is the browser tab's Gradio session hash, which says which interview it runs; the
browser names each peer connection with a random id of its own, kept here for its ICE candidates
and the stop button.

While the service drains (a stop signal, app.py), a new connection is refused here as the REST
route's offer is (RefuseWhileDraining): these calls reach the gateway through Gradio's own
routes, which that middleware does not see. ICE candidates and the stop button still work for
connections made before the drain.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol

import structlog

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
from ui.gradio_host import IceCandidate, Refusal

log = structlog.get_logger(__name__)

# Connections remembered at once (for their candidates and stop); the oldest are forgotten first.
MAX_PEERS = 256

DRAINING = (
    "This server is shutting down, so voice cannot start here: type your answers, or retry shortly."
)
NO_INTERVIEW = "Start an interview first, then press the microphone button."
INTERVIEW_ENDED = "This interview has ended: start a new one to talk."


class DrainState(Protocol):
    """The service's runtime, as far as signaling needs it (interview.runtime.Runtime)."""

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
    """The microphone's calls on the service's VoiceGateway (ui.gradio_host.VoiceSignaling)."""

    def __init__(
        self, gateway: VoiceGateway, service: InterviewService, pages: PageSessions
    ) -> None:
        self.gateway = gateway
        self.service = service
        self.pages = pages
        # The browser's connection id -> interview session id, for its ICE candidates and stop.
        self.peers: OrderedDict[str, str] = OrderedDict()

    async def rtc_configuration(self, page: str) -> dict[str, Any] | Refusal:
        """The browser's RTCConfiguration: the session's own TURN credentials, as /ice-servers."""
        session = await self._page_session(page)
        if isinstance(session, Refusal):
            return session
        ice = self.gateway.ice_servers(session)
        return {
            "iceServers": [
                {"urls": s.urls, "username": s.username, "credential": s.credential}
                for s in ice.servers
            ]
        }

    async def offer(self, page: str, connection: str, sdp: str) -> dict[str, str] | Refusal:
        """Connect the page's interview with the browser's offer: the answer, or why not."""
        if self.pages.runtime.draining:
            # As RefuseWhileDraining answers POST /{id}/rtc/offer: the page's interview stays
            # open (typing goes on); voice is for a server that stays.
            return self._refused(page, Refusal("draining", DRAINING))
        session = await self._page_session(page)
        if isinstance(session, Refusal):
            return session
        try:
            answer = await self.gateway.offer(session, sdp, "offer")
        except AlreadyConnected:
            refusal = Refusal("connection_already_exists", "Voice is already connected.")
            return self._refused(page, refusal)
        except AtCapacity as exc:
            message = f"Every voice slot is in use ({exc}); type your answers or try again shortly."
            return self._refused(page, Refusal("concurrency_limit_reached", message))
        except VoiceUnavailable as exc:
            message = f"Voice is {exc.state}: {exc.detail}"
            return self._refused(page, Refusal("voice_unavailable", message))
        except InvalidOffer as exc:
            message = f"The browser's offer was refused: {exc}"
            return self._refused(page, Refusal("invalid_offer", message))
        self.peers[connection] = session.id
        while len(self.peers) > MAX_PEERS:
            self.peers.popitem(last=False)
        self.pages.note_voice(page, None)
        return {"sdp": answer.sdp, "type": answer.type}

    async def candidate(self, connection: str, candidate: IceCandidate) -> Refusal | None:
        """Add one of the browser's ICE candidates to its connection."""
        session_id = self.peers.get(connection)
        if session_id is None:
            return Refusal("unknown_connection", "no connection for this id")
        try:
            session = await self.service.open_session(session_id)
            await self.gateway.add_ice_candidate(
                session, candidate.candidate, candidate.sdp_mid, candidate.sdp_mline_index
            )
        except (SessionClosed, SessionNotFound, NoConnection):
            return Refusal("connection_closed", "the connection is closed")
        except InvalidCandidate as exc:
            return Refusal("invalid_candidate_format", str(exc))
        return None

    async def stop(self, connection: str) -> None:
        """The page's stop button: close the interview's voice connection (it can reconnect)."""
        session_id = self.peers.pop(connection, None)
        if session_id is not None:
            await self.gateway.close(session_id)

    async def _page_session(self, page: str) -> SessionRow | Refusal:
        """The page's open interview, or why there is none (a message for the page)."""
        session_id = self.pages.session_id_for(page)
        if session_id is None:
            return Refusal("no_interview", NO_INTERVIEW)
        try:
            return await self.service.open_session(session_id)
        except (SessionClosed, SessionNotFound):
            return Refusal("no_interview", INTERVIEW_ENDED)

    def _refused(self, page: str, refusal: Refusal) -> Refusal:
        log.info("ui_voice_refused", reason=refusal.code)
        self.pages.note_voice(page, refusal.message)
        return refusal
