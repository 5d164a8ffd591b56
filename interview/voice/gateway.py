"""WebRTC signaling for interview sessions: a session's offer answered, its ICE candidates and
ICE servers, and its connection closed.

A connection is keyed by its session id, so a session has at most one and a reconnect after a
drop finds its interview where it was. The WebRTC host opens once the speech engines are loaded;
until then offers are refused with 503 and health says "loading".
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref

import structlog

from interview.config import Settings
from interview.domain import OPEN_STATUSES, ConnectionState
from interview.sessions import InterviewService, SessionClosed
from interview.speech.stack import LoadState, SpeechStack
from interview.speech.vad import SAMPLE_RATE as VAD_SAMPLE_RATE
from interview.store import SessionRow
from interview.turn_credentials import IceServers, TurnCredentialIssuer
from interview.voice.errors import AlreadyConnected, InvalidOffer, NoConnection, VoiceUnavailable
from interview.voice.listener import Listener
from interview.voice.pipeline import VoicePipeline
from interview.voice.presence import Presence
from interview.voice.rtc import LIVE_STATES, Answer, IceConfig, RtcHost

log = structlog.get_logger(__name__)

# A connected peer that has sent no audio for this long is gone (a browser sends a frame every
# 20 ms, muted or not): a new offer for its session replaces it rather than get 409.
MEDIA_STALE_SECONDS = 5.0
# How long closing every connection at shutdown waits for their state to be written.
CLOSE_RECORD_SECONDS = 3.0


class VoiceGateway:
    def __init__(
        self,
        settings: Settings,
        sessions: InterviewService,
        speech: SpeechStack,
        pipeline: VoicePipeline,
        presence: Presence,
        turn_issuer: TurnCredentialIssuer,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.speech = speech
        self.pipeline = pipeline
        self.presence = presence
        self.turn_issuer = turn_issuer
        self._rtc: RtcHost[Listener] | None = None
        self._failure: str | None = None
        self._answers: dict[str, Answer] = {}
        self._offer_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def open(self) -> None:
        """Open the WebRTC host once the speech engines are loaded (Runtime.start)."""
        if self.speech.state is not LoadState.ready:
            return
        try:
            # Building it imports fastrtc, and so gradio: seconds, off the event loop.
            self._rtc = await asyncio.to_thread(
                RtcHost,
                ear_for=self.pipeline.listener_for,
                greet=self.pipeline.greet,
                reply=self.pipeline.reply,
                capacity=self.settings.max_concurrent_interviews,
                input_rate=VAD_SAMPLE_RATE,
                output_rate=self.speech.engines.tts.sample_rate,
            )
        except Exception as exc:  # health reports it; text interviews keep working
            self._failure = str(exc)
            log.exception("rtc_host_failed")
            return
        log.info("voice_ready")

    @property
    def state(self) -> LoadState:
        """disabled, loading (speech engines, then the WebRTC host), ready or failed."""
        if self._failure is not None:
            return LoadState.failed
        if self.speech.state is LoadState.ready and self._rtc is None:
            return LoadState.loading
        return self.speech.state

    @property
    def detail(self) -> str:
        if self._failure is not None:
            return self._failure
        if self.speech.state is LoadState.ready and self._rtc is None:
            return "opening the WebRTC host"
        return self.speech.detail

    # signaling

    async def offer(self, session: SessionRow, sdp: str, type_: str) -> Answer:
        rtc = self._ready()
        _check_offer(sdp, type_)
        session_id = session.id
        lock = self._offer_locks.get(session_id)
        if lock is None:
            lock = self._offer_locks[session_id] = asyncio.Lock()
        # One offer at a time per session: two at once (a double click, a retry) would both
        # pass the checks below and leave one connection untracked.
        async with lock:
            if rtc.state(session_id) in LIVE_STATES:
                silent = rtc.silent_for(session_id)
                if silent is None or silent < MEDIA_STALE_SECONDS:
                    raise AlreadyConnected()
                # Connected, but no audio for a while: the page was reloaded or its network
                # dropped, and ICE would take ~30 s to say so. The same session's new offer (its
                # token was checked) takes over instead of waiting that out.
                log.info(
                    "voice_connection_taken_over", session_id=session_id, silent_s=round(silent, 1)
                )
            if rtc.has_leftovers(session_id):
                await rtc.discard(session_id)  # a dropped connection: reconnect afresh
            started = time.perf_counter()
            answer = await rtc.offer(
                session_id,
                sdp,
                self._ice_config(session),
                on_state=lambda state: self.presence.changed(session_id, state),
            )
            self._answers[session_id] = answer
            log.info(
                "voice_offer_answered",
                session_id=session_id,
                offer_ms=round((time.perf_counter() - started) * 1000),
            )
            await self.sessions.connection_changed(session_id, ConnectionState.connecting)
            return answer

    def answer(self, session: SessionRow) -> Answer:
        """The answer to the session's current connection, for a client that lost it."""
        self._ready()
        try:
            return self._answers[session.id]
        except KeyError:
            raise NoConnection("no offer has been made for this session") from None

    async def add_ice_candidate(
        self, session: SessionRow, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        await self._ready().add_candidate(session.id, candidate, sdp_mid, sdp_mline_index)

    def ice_servers(self, session: SessionRow) -> IceServers:
        """The session's own TURN credentials, valid until it expires at the latest."""
        if session.status not in OPEN_STATUSES:
            raise SessionClosed(session.status)  # no relay credentials for a finished interview
        return self.turn_issuer.issue(
            session.id, now=self.sessions.clock(), not_after=session.expires_at
        )

    async def close(self, session_id: str) -> None:
        if self._rtc is not None:
            await self._rtc.close(session_id)
        self._answers.pop(session_id, None)

    def has_connection(self, session_id: str) -> bool:
        return self._rtc is not None and self._rtc.state(session_id) is not None

    async def close_all(self) -> int:
        """Close every connection still open and wait until each one's end is recorded."""
        open_ids = self._rtc.open_sessions() if self._rtc is not None else []
        for session_id in open_ids:
            await self.close(session_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_RECORD_SECONDS):
                await self.presence.settle()
        return len(open_ids)

    def live_connections(self) -> int:
        return self._rtc.live() if self._rtc is not None else 0

    # internals

    def _ready(self) -> RtcHost[Listener]:
        if self._rtc is None:
            raise VoiceUnavailable(self.state, self.detail)
        return self._rtc

    def _ice_config(self, session: SessionRow) -> IceConfig:
        return IceConfig(
            servers=self.ice_servers(session).servers,
            relay_only=self.settings.rtc_ice_transport_policy == "relay",
        )


def _check_offer(sdp: str, type_: str) -> None:
    if type_ != "offer":
        raise InvalidOffer(f"type must be 'offer', not {type_!r}")
    if not sdp.lstrip().startswith("v=0"):
        raise InvalidOffer("sdp is not a session description (it must start with 'v=0')")
    media = [line.split()[0] for line in sdp.splitlines() if line.startswith("m=")]
    if "m=audio" not in media:
        raise InvalidOffer("the offer has no audio track: add the microphone before the offer")
    if "m=application" not in media:
        raise InvalidOffer(
            "the offer has no data channel: create one (pc.createDataChannel) before the offer"
        )
