"""WebRTC signaling for interview sessions, over one FastRTC Stream.

The Stream's connection id is the session id, so a session has at most one live connection and
a reconnect after a drop finds its interview where it was. Models load in the background at
start-up; until they are warm, offers are refused with 503 and health says "loading".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import structlog

from interview.config import Settings
from interview.events import Event, EventBus
from interview.sessions import InterviewService
from interview.store import SessionRow
from interview.voice.errors import (
    AlreadyConnected,
    AtCapacity,
    InvalidCandidate,
    InvalidOffer,
    NoConnection,
    VoiceUnavailable,
)
from interview.voice.priority_worker import PriorityWorker

if TYPE_CHECKING:
    from fastrtc import Stream

    from interview.voice.handler import InterviewHandler
    from interview.voice.pipeline import VoicePipeline

log = structlog.get_logger(__name__)

LIVE_STATES = ("new", "connecting", "connected")
# A session whose plan finished in text mode while a voice connection was open.
PLAN_FINISHED_CLOSE_SECONDS = 30.0
# A connected peer that has sent no audio for this long is gone (a browser sends a frame every
# 20 ms, muted or not): a new offer for its session replaces it rather than get 409.
MEDIA_STALE_SECONDS = 5.0
# How long closing every connection at shutdown waits for their state to be written.
CLOSE_RECORD_SECONDS = 3.0


class VoiceGateway:
    def __init__(self, settings: Settings, service: InterviewService, events: EventBus) -> None:
        self.settings = settings
        self.service = service
        self.events = events
        self.state = "loading" if settings.voice_enabled else "disabled"
        self.detail = "loading models" if settings.voice_enabled else "VOICE_ENABLED is false"
        self.stream: Stream | None = None
        self.pipeline: VoicePipeline | None = None
        self._voices: list[str] = []
        self._answers: dict[str, dict[str, str]] = {}
        self._offer_locks: dict[str, asyncio.Lock] = {}
        self._connected_at: dict[str, float] = {}  # monotonic, per session's current peer
        self._tasks: set[asyncio.Task[Any]] = set()
        # Speech-to-text runs as many at once as the model has workers; synthesis, one at a
        # time in order of urgency (it uses every core it is given).
        self.compute = ThreadPoolExecutor(settings.stt_workers, thread_name_prefix="stt")
        self.tts_worker = PriorityWorker("tts")
        events.add_listener(self._on_event)

    # start-up

    async def load(self) -> None:
        if not self.settings.voice_enabled:
            return
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._load_blocking)
        except Exception as exc:  # health reports it; text interviews keep working
            self.state, self.detail = "failed", str(exc)
            log.exception("voice_load_failed")
            return
        self.state, self.detail = "ready", "models loaded and warm"
        log.info("voice_ready", load_seconds=round(time.perf_counter() - started, 2))

    def _load_blocking(self) -> None:
        # gradio (imported by fastrtc) is kept from phoning home by interview.no_telemetry.
        from fastrtc import Stream

        from interview.models import KOKORO_MODEL
        from interview.speech.engines import build_engines
        from interview.voice.handler import InterviewHandler
        from interview.voice.pipeline import VoicePipeline
        from interview.voice.speech_cache import SpeechCache
        from interview.voice.turn_detector import DetectorOptions

        engines = build_engines(self.settings)
        engines.warmup()
        self._voices = sorted(engines.tts.voices)
        speech = SpeechCache(
            engines.tts,
            self.tts_worker,
            directory=self.settings.speech_cache_dir,
            model_id=KOKORO_MODEL.sha256,
        )
        pipeline = VoicePipeline(
            self.service,
            engines.stt,
            speech,
            self.compute,
            self.events,
            handler_for=self.handler_for,
            close_connection=self.close,
        )
        handler = InterviewHandler(
            pipeline.reply,
            pipeline.greet,
            engines.vad,
            DetectorOptions(
                end_silence=self.settings.end_of_turn_silence_seconds,
                max_turn=self.settings.max_answer_seconds,
                threshold=self.settings.vad_threshold,
            ),
            on_turn_event=pipeline.on_turn_event,
        )
        self.stream = Stream(
            handler=handler,
            modality="audio",
            mode="send-receive",
            concurrency_limit=self.settings.max_concurrent_interviews,
            # An explicit empty list: aiortc would otherwise look up a public STUN server.
            server_rtc_configuration={"iceServers": []},
            verbose=False,
        )
        self.pipeline = pipeline

    async def shutdown(self) -> None:
        await self.close_all()
        self.compute.shutdown(wait=False, cancel_futures=True)
        self.tts_worker.shutdown()

    def available_voices(self) -> list[str] | None:
        """The loaded speech engine's voices, sorted; None while no engine is ready (disabled,
        loading or failed), when there is nothing to check a voice against."""
        return list(self._voices) if self.state == "ready" else None

    # signaling

    def live_connections(self) -> int:
        if self.stream is None:
            return 0
        return sum(pc.connectionState in LIVE_STATES for pc in self.stream.pcs.values())

    def handler_for(self, session_id: str) -> InterviewHandler | None:
        if self.stream is None:
            return None
        return self.stream.handlers.get(session_id)  # type: ignore[return-value]

    async def offer(self, session: SessionRow, sdp: str, type_: str) -> dict[str, str]:
        stream = self._ready_stream()
        _check_offer(sdp, type_)
        session_id = session.id
        # One offer at a time per session: two at once (a double click, a retry) would both
        # pass the checks below and leave one connection untracked.
        async with self._offer_locks.setdefault(session_id, asyncio.Lock()):
            return await self._offer(stream, session, sdp)

    async def _offer(self, stream: Stream, session: SessionRow, sdp: str) -> dict[str, str]:
        session_id = session.id
        existing = stream.pcs.get(session_id)
        if existing is not None and existing.connectionState in LIVE_STATES:
            silent = self._media_silent_for(session_id, existing)
            if silent is None or silent < MEDIA_STALE_SECONDS:
                raise AlreadyConnected()
            # Connected, but no audio for a while: the page was reloaded or its network
            # dropped, and ICE would take ~30 s to say so. The same session's new offer (its
            # token was checked) takes over instead of waiting that out.
            log.info(
                "voice_connection_taken_over", session_id=session_id, silent_s=round(silent, 1)
            )
        if existing is not None or session_id in stream.connections:
            # A dropped connection: clear what is left of it, then reconnect. fastrtc cleans up
            # a closed connection by session id from its own state-change handler; let that
            # run now, or it would later remove the new connection instead.
            if existing is not None:
                await existing.close()
                for _ in range(40):
                    if session_id not in stream.handlers:
                        break
                    await asyncio.sleep(0.025)
            stream.clean_up(session_id)
        if self.live_connections() >= self.settings.max_concurrent_interviews:
            raise AtCapacity(self.settings.max_concurrent_interviews)

        stream.server_rtc_configuration = self._server_configuration(session)
        body = {"sdp": sdp, "type": "offer", "webrtc_id": session_id}
        started = time.perf_counter()
        try:
            # handle_offer creates the peer connection before its first await, so the
            # configuration set just above is the one this connection gets.
            result = await stream.handle_offer(body, stream.set_additional_outputs(session_id))
        except Exception as exc:  # aiortc's SDP parser raises many kinds
            await self._discard(session_id)
            raise InvalidOffer(f"the offer's SDP could not be used: {exc}") from exc
        if not isinstance(result, dict):
            await self._discard(session_id)
            error = _failure(result)
            if error == "concurrency_limit_reached":
                raise AtCapacity(self.settings.max_concurrent_interviews)
            if error == "connection_already_exists":
                raise AlreadyConnected()
            raise InvalidOffer(f"the offer was refused: {error}")
        handler = self.handler_for(session_id)
        pc = stream.pcs.get(session_id)
        if handler is None or pc is None:
            raise InvalidOffer("the connection closed while it was being set up; offer again")
        handler.session_id = session_id
        pc.on("connectionstatechange", lambda: self._connection_changed(session_id, pc))
        self._answers[session_id] = result
        log.info(
            "voice_offer_answered",
            session_id=session_id,
            offer_ms=round((time.perf_counter() - started) * 1000),
        )
        await self.service.set_connection_state(session_id, "connecting")
        # Speech for the line the candidate will hear first is made while ICE connects.
        line = await self.service.current_line(session_id)
        if line is not None and self.pipeline is not None:
            self.pipeline.speech.prefetch(line.text, self.service.voice_for(session))
        return result

    def answer(self, session: SessionRow) -> dict[str, str]:
        self._ready_stream()
        try:
            return self._answers[session.id]
        except KeyError:
            raise NoConnection("no offer has been made for this session") from None

    async def add_ice_candidate(
        self, session: SessionRow, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        stream = self._ready_stream()
        if session.id not in stream.pcs:
            raise NoConnection("no connection for this session: send an offer first")
        if not candidate.strip():
            return  # the end-of-candidates marker: nothing to add
        body = {
            "type": "ice-candidate",
            "webrtc_id": session.id,
            "candidate": {
                "candidate": candidate,
                "sdpMid": sdp_mid,
                "sdpMLineIndex": sdp_mline_index,
            },
        }
        result = await stream.handle_offer(body, None)
        error = _failure(result)
        if error is None:
            return
        if error in ("unknown_connection", "connection_closed"):
            raise NoConnection("the connection for this session is closed")
        raise InvalidCandidate(f"the ICE candidate was refused: {error}")

    async def close_all(self) -> int:
        """Close every connection still open and wait until each one's end is recorded."""
        open_ids = [
            session_id
            for session_id, pc in (self.stream.pcs.items() if self.stream else ())
            if pc.connectionState != "closed"
        ]
        for session_id in open_ids:
            await self.close(session_id)
        # Closing spawns the writes of connection_state "disconnected": let them land before
        # the database is disposed.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=CLOSE_RECORD_SECONDS)
        return len(open_ids)

    async def close(self, session_id: str) -> None:
        if self.stream is None:
            return
        pc = self.stream.pcs.get(session_id)
        if pc is not None:
            await pc.close()
        self._answers.pop(session_id, None)

    # internals

    def _ready_stream(self) -> Stream:
        if self.state != "ready" or self.stream is None:
            raise VoiceUnavailable(self.state, self.detail)
        return self.stream

    def _server_configuration(self, session: SessionRow) -> Any:
        from aiortc import RTCConfiguration, RTCIceServer
        from aiortc.rtcconfiguration import RTCIceTransportPolicy

        servers = self.service.ice_servers(session).servers
        relay = self.settings.rtc_ice_transport_policy == "relay" and bool(servers)
        return RTCConfiguration(
            iceServers=[
                RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
                for s in servers
            ],
            iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay else RTCIceTransportPolicy.ALL,
        )

    def _media_silent_for(self, session_id: str, pc: Any) -> float | None:
        """How long a connected peer has sent no audio; None while it is still setting up
        (ICE through a relay can take seconds before the first frame)."""
        handler = self.handler_for(session_id)
        if pc.connectionState != "connected" or handler is None:
            return None
        silent = handler.media_silent_for()
        if silent is None:  # connected but not one frame yet: count from the connection
            return time.monotonic() - self._connected_at.get(session_id, time.monotonic())
        return silent

    async def _discard(self, session_id: str) -> None:
        if self.stream is None:
            return
        pc = self.stream.pcs.get(session_id)
        if pc is not None:
            await pc.close()
        self.stream.clean_up(session_id)

    def _connection_changed(self, session_id: str, pc: Any) -> None:
        if pc.connectionState == "connected":
            self._connected_at[session_id] = time.monotonic()
        elif pc.connectionState == "closed":
            self._connected_at.pop(session_id, None)
        state = {
            "connecting": "connecting",
            "connected": "connected",
            "failed": "disconnected",
            "closed": "disconnected",
        }.get(pc.connectionState)
        if state is not None:
            self._spawn(self.service.set_connection_state(session_id, state))

    def _on_event(self, event: Event) -> None:
        if event.type != "status" or event.data.get("status") not in ("ended", "expired"):
            return
        if self.stream is None or event.session_id not in self.stream.pcs:
            return
        if event.data.get("reason") == "plan_finished":
            # The pipeline closes after the closing line has played; this is the fallback
            # for a plan finished in text mode while a voice connection was open.
            self._spawn(self._close_later(event.session_id, PLAN_FINISHED_CLOSE_SECONDS))
        else:
            self._spawn(self.close(event.session_id))

    async def _close_later(self, session_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        await self.close(session_id)

    def _spawn(self, coroutine: Any) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coroutine.close()  # no loop (a test driving the domain alone): nothing to close
            return
        task = loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


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


def _failure(result: Any) -> str | None:
    """The error code of a fastrtc refusal (HTTP 200 with status 'failed'), or None."""
    body = result
    if hasattr(result, "body"):
        with contextlib.suppress(ValueError):
            body = json.loads(result.body)
    if isinstance(body, dict) and body.get("status") == "failed":
        return str(body.get("meta", {}).get("error", "unknown"))
    return None
