"""WebRTC signaling for interview sessions: a session's offer answered, its ICE candidates and
ICE servers, and its connection closed.

A connection is keyed by its session id, so a session has at most one and a reconnect after a
drop finds its interview where it was. The WebRTC host opens once the speech engines are loaded;
until then offers are refused with 503 and health says "loading".

With several instances on one PostgreSQL, the connection lives on the instance that accepted the
offer (its owner, interview/voice/ownership.py): another instance relays the session's ICE
candidates and answer requests to it, and a new offer there first asks the owner to give the
session up (refused while its call is live, as on one instance). A dead owner's sessions are
taken by the next offer anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Coroutine
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from interview.config import Settings
from interview.domain import OPEN_STATUSES, ConnectionState
from interview.sessions import InterviewService, SessionClosed
from interview.speech.stack import LoadState, SpeechStack
from interview.speech.vad import SAMPLE_RATE as VAD_SAMPLE_RATE
from interview.store import SessionRow
from interview.turn_credentials import IceServers, TurnCredentialIssuer
from interview.voice.errors import (
    AlreadyConnected,
    InvalidCandidate,
    InvalidOffer,
    NoConnection,
    OwnerUnreachable,
    VoiceUnavailable,
)
from interview.voice.listener import Listener
from interview.voice.ownership import MediaOwnership, error_result
from interview.voice.pipeline import VoicePipeline
from interview.voice.presence import Presence
from interview.voice.rtc import LIVE_STATES, Answer, IceConfig, RtcHost

log = structlog.get_logger(__name__)

# A connected peer that has sent no audio for this long is gone (a browser sends a frame every
# 20 ms, muted or not): a new offer for its session replaces it rather than get 409.
MEDIA_STALE_SECONDS = 5.0
# How long closing every connection at shutdown waits for their state to be written.
CLOSE_RECORD_SECONDS = 3.0
# How long giving a session up for another instance waits for its closed state to be written
# (so it does not land after the new connection's).
RELEASE_RECORD_SECONDS = 1.0
# Rounds of "ask the owner to give it up, then claim it" before an offer gives up with 503:
# more than one only when other offers for the same session race this one.
CLAIM_ROUNDS = 3


class VoiceGateway:
    def __init__(
        self,
        settings: Settings,
        sessions: InterviewService,
        speech: SpeechStack,
        pipeline: VoicePipeline,
        presence: Presence,
        turn_issuer: TurnCredentialIssuer,
        ownership: MediaOwnership,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.speech = speech
        self.pipeline = pipeline
        self.presence = presence
        self.turn_issuer = turn_issuer
        self.ownership = ownership
        self._rtc: RtcHost[Listener] | None = None
        self._failure: str | None = None
        self._answers: dict[str, Answer] = {}
        self._offer_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._tasks: set[asyncio.Task[None]] = set()

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
        # One offer at a time per session: two at once (a double click, a retry) would both
        # pass the checks below and leave one connection untracked.
        async with self._offer_lock(session_id):
            await self._take_ownership(session_id)
            try:
                return await self._connect(rtc, session, sdp)
            except BaseException:
                if not self._holds(session_id):
                    await self._give_up(session_id)
                raise

    async def answer(self, session: SessionRow) -> Answer:
        """The answer to the session's current connection, for a client that lost it."""
        owner = await self.ownership.remote_owner(session.id)
        if owner is not None:
            found = await self.ownership.ask(owner, session.id, "answer")
            return Answer(sdp=str(found["sdp"]), type=str(found["type"]))
        return self._local_answer(session.id)

    async def add_ice_candidate(
        self, session: SessionRow, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        owner = await self.ownership.remote_owner(session.id)
        if owner is not None:
            payload = {"candidate": candidate, "sdpMid": sdp_mid, "sdpMLineIndex": sdp_mline_index}
            await self.ownership.ask(owner, session.id, "ice_candidate", payload)
            return
        await self._ready().add_candidate(session.id, candidate, sdp_mid, sdp_mline_index)

    async def serve_relay(self) -> None:
        """Carry out what other instances relay to this one (Runtime runs it until it stops)."""
        if self.ownership.shared:
            await self.ownership.relay.serve(
                self._relayed, busy=lambda: self.live_connections() > 0
            )

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
        try:
            # This instance holds nothing now: the next offer anywhere takes its sessions at once.
            await self.ownership.give_up_all()
        except (SQLAlchemyError, OSError):
            log.warning("voice_ownership_not_cleared")
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

    def _offer_lock(self, session_id: str) -> asyncio.Lock:
        lock = self._offer_locks.get(session_id)
        if lock is None:
            lock = self._offer_locks[session_id] = asyncio.Lock()
        return lock

    async def _connect(self, rtc: RtcHost[Listener], session: SessionRow, sdp: str) -> Answer:
        session_id = session.id
        self._check_replaceable(rtc, session_id)
        if rtc.has_leftovers(session_id):
            await rtc.discard(session_id)  # a dropped connection: reconnect afresh
        started = time.perf_counter()

        def changed(state: str) -> None:
            self.presence.changed(session_id, state)
            if state in ("closed", "failed") and self.ownership.shared:
                self._spawn(self._give_up_unless_held(session_id))

        answer = await rtc.offer(session_id, sdp, self._ice_config(session), on_state=changed)
        self._answers[session_id] = answer
        log.info(
            "voice_offer_answered",
            session_id=session_id,
            offer_ms=round((time.perf_counter() - started) * 1000),
        )
        await self.sessions.connection_changed(session_id, ConnectionState.connecting)
        return answer

    def _check_replaceable(self, rtc: RtcHost[Listener], session_id: str) -> None:
        """AlreadyConnected while the session's connection here is live; a connection whose
        audio stopped may be replaced."""
        if rtc.state(session_id) not in LIVE_STATES:
            return
        silent = rtc.silent_for(session_id)
        if silent is None or silent < MEDIA_STALE_SECONDS:
            raise AlreadyConnected()
        # Connected, but no audio for a while: the page was reloaded or its network dropped,
        # and ICE would take ~30 s to say so. The same session's new offer (its token was
        # checked) takes over instead of waiting that out.
        log.info("voice_connection_taken_over", session_id=session_id, silent_s=round(silent, 1))

    def _holds(self, session_id: str) -> bool:
        """Whether this instance has a live connection for the session."""
        return self._rtc is not None and self._rtc.state(session_id) in LIVE_STATES

    async def _take_ownership(self, session_id: str) -> None:
        """Record this instance as the owner of the session's media, taking it from the owner
        that gives it up or from a dead one. AlreadyConnected when the owner's call is live,
        OwnerUnreachable when it does not answer."""
        ownership = self.ownership
        if not ownership.shared:
            return
        for _ in range(CLAIM_ROUNDS):
            owner = await ownership.owner(session_id)
            if owner is not None and owner != ownership.me:
                if await ownership.instances.alive(owner):
                    await ownership.ask(owner, session_id, "release")
                    log.info("voice_session_released", session_id=session_id, by=owner)
                    continue  # it is no one's now (or a racing offer took it): look again
                log.info("voice_owner_dead", session_id=session_id, owner=owner)
            if await ownership.claim(session_id, replacing=owner):
                return
        raise OwnerUnreachable("the session's voice connection changed hands meanwhile")

    async def _give_up(self, session_id: str) -> None:
        try:
            await self.ownership.give_up(session_id)
        except (SQLAlchemyError, OSError):
            # Left recorded: another instance asks this one to give it up, or finds it dead.
            log.warning("voice_ownership_not_cleared", session_id=session_id)

    async def _give_up_unless_held(self, session_id: str) -> None:
        # Under the offer lock: a closed connection's news must not clear the ownership of the
        # session's next connection here.
        async with self._offer_lock(session_id):
            if not self._holds(session_id):
                await self._give_up(session_id)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _local_answer(self, session_id: str) -> Answer:
        self._ready()
        try:
            return self._answers[session_id]
        except KeyError:
            raise NoConnection("no offer has been made for this session") from None

    async def _relayed(self, kind: str, session_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Another instance's request for a session whose connection is here."""
        try:
            if kind == "ice_candidate":
                await self._ready().add_candidate(
                    session_id, payload["candidate"], payload["sdpMid"], payload["sdpMLineIndex"]
                )
                return {}
            if kind == "answer":
                answer = self._local_answer(session_id)
                return {"sdp": answer.sdp, "type": answer.type}
            if kind == "release":
                await self._release(session_id)
                return {}
        except (AlreadyConnected, NoConnection, InvalidCandidate, InvalidOffer) as exc:
            return error_result(exc) or {}
        except VoiceUnavailable as exc:
            # This instance's voice went away (failed, stopping): it holds no connection.
            return error_result(NoConnection(f"no live connection here: {exc.detail}")) or {}
        raise ValueError(f"unknown relayed request {kind!r}")

    async def _release(self, session_id: str) -> None:
        """Give the session up for another instance's offer: refused (AlreadyConnected) while
        its connection here is live, as a second offer here would be."""
        async with self._offer_lock(session_id):
            rtc = self._rtc
            if rtc is not None:
                self._check_replaceable(rtc, session_id)
                if rtc.has_leftovers(session_id):
                    await rtc.discard(session_id)
            self._answers.pop(session_id, None)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RELEASE_RECORD_SECONDS):
                    await self.presence.settle()
            await self.ownership.give_up(session_id)


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
