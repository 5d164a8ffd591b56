"""The one door into fastrtc (and the aiortc under it): WebRTC peer connections keyed by session.

The rest of the service offers, trickles, closes and counts connections through `RtcHost`, hears
audio through an `Ear` of its own and speaks by yielding `Frame`s or `Close`; nothing else imports
fastrtc or aiortc (tests/test_architecture.py checks it). The product's design is kept: one
fastrtc `Stream` whose handler is a `ReplyOnPause`.

What this module relies on in fastrtc 0.0.34 beyond its documented surface, each checked by a
contract test in tests/voice/test_rtc_contract.py so that an upgrade fails there, by name:
- `Stream.offer(Body)`, the front door of its /webrtc/offer route, refuses with HTTP 200 and
  `{"status": "failed", "meta": {"error": <code>}}` rather than raising; the codes are mapped to
  our errors here.
- `Stream.pcs` (the peer connections by id) and `Stream.handlers` (each connection's copy of the
  handler), read to count, find and close connections.
- fastrtc cleans a closed connection up from its own connection-state handler, by id; a new
  offer for the same id must wait for that (`Stream.clean_up` finishes what is left), or the
  late clean-up would remove the new connection.
- `Stream.server_rtc_configuration` is read when each offer's RTCPeerConnection is made: here it
  is served per offer from a context variable, so each session gets its own TURN credentials
  (upstream, a per-connection configuration callable would remove this).
- `ReplyOnPause`: `copy()` makes each connection's handler; `process_audio(audio, state)` may
  set `state.stream` and `state.pause_detected` to hand over a finished turn; `emit()` returns
  None at once while no turn is pending (it is called again immediately, so we wait on
  `self.event` first); `receive()` is replaced (ours hears the candidate while the handler
  responds, for barge-in) and sets `self.event` itself; `reset()` ends a reply and clears
  `state` and `event`, so an answer that ended during the reply is handed over again after it;
  `clear_queue()` drops the audio queued for sending; `startup_fn` runs once per connection and
  is spoken like a reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from interview.turn_credentials import IceServer
from interview.voice.errors import (
    AlreadyConnected,
    AtCapacity,
    InvalidCandidate,
    InvalidOffer,
    NoConnection,
)

if TYPE_CHECKING:
    from aiortc import RTCConfiguration
    from fastrtc import AudioEmitType, Stream
    from fastrtc.utils import AudioChunk

# Peer connection states (aiortc's) that hold a place: counted against capacity.
LIVE_STATES = frozenset({"new", "connecting", "connected"})
# How long emit() waits for a turn before handing control back to fastrtc, which calls it again
# at once when it returns None: without the wait a silent connection spins a whole core. The
# wait ends the moment a turn ends, so its length costs no latency.
IDLE_WAIT_SECONDS = 0.5
# How long a new offer waits for fastrtc's own clean-up of the session's previous connection.
CLEAN_UP_WAIT_SECONDS = 1.0
# After a Close, the connection is closed this much later: the browser gets the end-of-stream
# message first, and the last words are not cut by network jitter.
CLOSE_DELAY_SECONDS = 1.0


class Ear(Protocol):
    """What hears one connection's audio (interview.voice.listener.Listener)."""

    def hear(self, samples: NDArray[np.int16]) -> bool:
        """Take the candidate's audio (16 kHz mono); True when their answer has just ended."""
        ...

    def reset(self) -> None:
        """Forget the answer in progress."""
        ...


EarT = TypeVar("EarT", bound=Ear)
# Audio for the candidate: (sample rate, float32 samples shaped (1, n)).
Frame = tuple[int, NDArray[np.float32]]


@dataclass(frozen=True)
class Close:
    """Yielded by a reply to end the connection once what came before it was sent."""

    reason: str


@dataclass(frozen=True)
class Hush:
    """Yielded by a reply to drop the audio queued for sending but not yet sent (the candidate
    started speaking over it)."""


Output = Frame | Close | Hush
# A connection's reply to a finished answer (or its greeting): what to send, in order.
Speaker = Callable[[str, EarT], AsyncIterator[Output]]


@dataclass(frozen=True)
class IceConfig:
    """The server side's ICE configuration for one connection."""

    servers: Sequence[IceServer] = ()
    # Only relayed candidates (tasks in private subnets reach browsers through TURN alone).
    relay_only: bool = False


@dataclass(frozen=True)
class Answer:
    sdp: str
    type: str


@dataclass(frozen=True)
class _Offering:
    session_id: str
    configuration: RTCConfiguration


# The offer being handled in this task: read by fastrtc (through the property below) when it
# makes the peer connection, and by the handler prototype when fastrtc copies it.
_offering: contextvars.ContextVar[_Offering] = contextvars.ContextVar("spool_rtc_offering")


class RtcHost(Generic[EarT]):
    """Peer connections for interview sessions, at most one per session and `capacity` in all.

    Each connection gets its own `Ear` (from `ear_for(session_id)`), its greeting from `greet`
    and a reply from `reply` after every answer its ear ends.
    """

    def __init__(
        self,
        *,
        ear_for: Callable[[str], EarT],
        greet: Speaker[EarT],
        reply: Speaker[EarT],
        capacity: int,
        input_rate: int,
        output_rate: int,
    ) -> None:
        self.capacity = capacity
        self._ear_for = ear_for
        self._greet = greet
        self._reply = reply
        self._input_rate = input_rate
        self._output_rate = output_rate
        self._connected_at: dict[str, float] = {}  # monotonic, per session's current peer
        self._tasks: set[asyncio.Task[None]] = set()
        self._stream = _build_stream(self)

    # what fastrtc's handler copies call back

    def _new_handler(self) -> Any:
        offering = _offering.get(None)
        ear = self._ear_for(offering.session_id) if offering is not None else None
        return _handler_class()(self, offering.session_id if offering else None, ear)

    # the interface of our own

    async def offer(
        self,
        session_id: str,
        sdp: str,
        ice: IceConfig,
        on_state: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer a browser's offer with a new connection for `session_id`.

        AlreadyConnected if the session has one (`discard` it first to replace it), AtCapacity
        when every place is taken, InvalidOffer when the SDP cannot be used.
        """
        from fastrtc.stream import Body

        stream = self._stream
        if session_id in stream.pcs or session_id in stream.connections:
            raise AlreadyConnected()
        if self.live() >= self.capacity:
            raise AtCapacity(self.capacity)
        token = _offering.set(_Offering(session_id, _configuration(ice)))
        try:
            result = await stream.offer(Body(sdp=sdp, type="offer", webrtc_id=session_id))
        except Exception as exc:  # aiortc's SDP parser raises many kinds
            await self.discard(session_id)
            raise InvalidOffer(f"the offer's SDP could not be used: {exc}") from exc
        finally:
            _offering.reset(token)
        error = _refusal(result)
        if error is not None:
            await self.discard(session_id)
            if error == "concurrency_limit_reached":
                raise AtCapacity(self.capacity)
            if error == "connection_already_exists":
                raise AlreadyConnected()
            raise InvalidOffer(f"the offer was refused: {error}")
        pc = stream.pcs.get(session_id)
        if pc is None or session_id not in stream.handlers:
            raise InvalidOffer("the connection closed while it was being set up; offer again")

        def changed() -> None:
            state = pc.connectionState
            if state == "connected":
                self._connected_at[session_id] = time.monotonic()
            elif state == "closed" and stream.pcs.get(session_id) in (pc, None):
                self._connected_at.pop(session_id, None)
            if on_state is not None:
                on_state(state)

        pc.on("connectionstatechange", changed)
        return Answer(sdp=result["sdp"], type=result["type"])

    async def add_candidate(
        self, session_id: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """A trickled ICE candidate from the browser; an empty one (end of candidates) is
        accepted and ignored."""
        from fastrtc.stream import Body

        if session_id not in self._stream.pcs:
            raise NoConnection("no connection for this session: send an offer first")
        if not candidate.strip():
            return
        body = Body(
            type="ice-candidate",
            webrtc_id=session_id,
            candidate={
                "candidate": candidate,
                "sdpMid": sdp_mid,
                "sdpMLineIndex": sdp_mline_index,
            },
        )
        error = _refusal(await self._stream.offer(body))
        if error is None:
            return
        if error in ("unknown_connection", "connection_closed"):
            raise NoConnection("the connection for this session is closed")
        raise InvalidCandidate(f"the ICE candidate was refused: {error}")

    async def close(self, session_id: str) -> bool:
        """Close the session's connection; False when it had none open."""
        pc = self._stream.pcs.get(session_id)
        if pc is None or pc.connectionState == "closed":
            return False
        await pc.close()
        return True

    def close_soon(self, session_id: str) -> None:
        """Close the session's connection CLOSE_DELAY_SECONDS from now."""

        async def later() -> None:
            await asyncio.sleep(CLOSE_DELAY_SECONDS)
            await self.close(session_id)

        task = asyncio.get_running_loop().create_task(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def discard(self, session_id: str) -> None:
        """Close the session's connection and clear all that is left of it, so a new offer for
        the session starts afresh."""
        stream = self._stream
        pc = stream.pcs.get(session_id)
        if pc is not None:
            await pc.close()
            # fastrtc removes a closed connection by id from its own state-change handler: let
            # it run now, or it would later remove the session's next connection instead.
            # Polled: fastrtc has no event to wait on for it.
            deadline = time.monotonic() + CLEAN_UP_WAIT_SECONDS
            while session_id in stream.handlers and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.025)
        stream.clean_up(session_id)
        self._connected_at.pop(session_id, None)

    def state(self, session_id: str) -> str | None:
        """The session's peer connection state ("new" ... "closed"), None without one."""
        pc = self._stream.pcs.get(session_id)
        return None if pc is None else str(pc.connectionState)

    def has_leftovers(self, session_id: str) -> bool:
        """Whether anything of an earlier connection of the session is still held."""
        return session_id in self._stream.pcs or session_id in self._stream.connections

    def live(self) -> int:
        """Connections holding a place: being set up or connected."""
        return sum(pc.connectionState in LIVE_STATES for pc in self._stream.pcs.values())

    def open_sessions(self) -> list[str]:
        """The sessions whose connection is not closed."""
        return [sid for sid, pc in self._stream.pcs.items() if pc.connectionState != "closed"]

    def ear(self, session_id: str) -> EarT | None:
        handler = self._stream.handlers.get(session_id)
        return getattr(handler, "ear", None)

    def silent_for(self, session_id: str) -> float | None:
        """Seconds since the session's connected peer last sent audio (or, before its first
        frame, since it connected); None while it is not connected."""
        pc = self._stream.pcs.get(session_id)
        handler = self._stream.handlers.get(session_id)
        if pc is None or pc.connectionState != "connected" or handler is None:
            return None
        last = getattr(handler, "last_frame_at", None)
        since = last if last is not None else self._connected_at.get(session_id)
        return None if since is None else time.monotonic() - since


class _NoPauseModel:
    """Stands in for fastrtc's pause model, which our Ear replaces: without a model given,
    ReplyOnPause would fetch its own silero from a model hub."""

    def vad(
        self, audio: tuple[int, NDArray[np.int16] | NDArray[np.float32]], options: Any
    ) -> tuple[float, list[AudioChunk]]:
        raise RuntimeError("the Ear detects turns; fastrtc's pause model is never used")

    def warmup(self) -> None:
        return None


def _configuration(ice: IceConfig) -> RTCConfiguration:
    from aiortc import RTCConfiguration, RTCIceServer
    from aiortc.rtcconfiguration import RTCIceTransportPolicy

    relay = ice.relay_only and bool(ice.servers)
    return RTCConfiguration(
        # An explicit list, even empty: with none, aiortc would look up a public STUN server.
        iceServers=[
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in ice.servers
        ],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay else RTCIceTransportPolicy.ALL,
    )


def _refusal(result: Any) -> str | None:
    """The error code of a fastrtc refusal (HTTP 200 with status "failed"), or None."""
    body = result
    if hasattr(result, "body"):
        with contextlib.suppress(ValueError):
            body = json.loads(result.body)
    if isinstance(body, dict) and body.get("status") == "failed":
        return str(body.get("meta", {}).get("error", "unknown"))
    return None


def _build_stream(host: RtcHost[Any]) -> Stream:
    return _stream_class()(
        # The prototype fastrtc copies for each connection; it has no session of its own.
        handler=_handler_class()(host, None, None),
        modality="audio",
        mode="send-receive",
        concurrency_limit=host.capacity,
        server_rtc_configuration={"iceServers": []},
        verbose=False,
    )


def _stream_class() -> type[Stream]:
    from fastrtc import Stream

    class _Stream(Stream):
        @property
        def server_rtc_configuration(self) -> RTCConfiguration | None:
            offering = _offering.get(None)
            if offering is not None:
                return offering.configuration
            return self._default_configuration

        @server_rtc_configuration.setter
        def server_rtc_configuration(self, value: RTCConfiguration | None) -> None:
            self._default_configuration = value

    return _Stream


_HANDLER_CLASS: type | None = None


def _handler_class() -> type:
    """The ReplyOnPause subclass, defined on first use: importing fastrtc imports gradio, which
    takes seconds and is not needed while voice is off."""
    global _HANDLER_CLASS
    if _HANDLER_CLASS is None:
        _HANDLER_CLASS = _define_handler()
    return _HANDLER_CLASS


def _define_handler() -> type:
    from fastrtc import AlgoOptions, CloseStream, ReplyOnPause

    class _Handler(ReplyOnPause):
        """One connection: its Ear decides when an answer ends; its replies are spoken."""

        def __init__(self, host: RtcHost[Any], session_id: str | None, ear: Ear | None) -> None:
            self.host = host
            self.session_id = session_id
            self.ear = ear
            # When the candidate's audio last arrived (monotonic), None before the first frame.
            self.last_frame_at: float | None = None
            # An answer that ended while a reply was still going: handed over after it.
            self._pending_answer = False
            super().__init__(
                self._on_answer,
                startup_fn=self._on_start,
                algo_options=AlgoOptions(),
                # Never fastrtc's own interruption (it would close the reply at any pause):
                # our receive() hears the candidate throughout, and the Ear decides.
                can_interrupt=False,
                output_sample_rate=host._output_rate,
                input_sample_rate=host._input_rate,
                model=_NoPauseModel(),
            )

        def copy(self) -> Any:
            # fastrtc copies the prototype for every connection, inside RtcHost.offer.
            return self.host._new_handler()

        def receive(self, frame: tuple[int, NDArray[np.int16]]) -> None:
            # A browser sends audio every 20 ms while connected, muted or not: audio that stops
            # means the page or its network is gone, long before ICE gives up (~30 s).
            self.last_frame_at = time.monotonic()
            self.process_audio(frame, self.state)
            if self.state.pause_detected:
                self.event.set()

        def process_audio(self, audio: tuple[int, NDArray[np.int16]], state: Any) -> None:
            rate, samples = audio
            if rate != self.host._input_rate:
                raise ValueError(f"expected {self.host._input_rate} Hz input, got {rate}")
            state.sampling_rate = rate
            if self.ear is not None and self.ear.hear(np.squeeze(samples)):
                if state.responding:
                    # The reply in progress is ending (the candidate took the floor): this
                    # answer's reply comes once it has.
                    self._pending_answer = True
                else:
                    self._hand_over(state)

        def _hand_over(self, state: Any) -> None:
            # The Ear keeps the answer; fastrtc only needs to know that one ended.
            state.stream = np.zeros((1, 1), dtype=np.int16)
            state.pause_detected = True

        def reset(self) -> None:
            super().reset()
            if self._pending_answer:
                self._pending_answer = False
                self._hand_over(self.state)
                self.event.set()

        def emit(self) -> Any:
            if not self.event.is_set():
                self.event.wait(IDLE_WAIT_SECONDS)
            return super().emit()

        async def _on_answer(
            self, _audio: tuple[int, NDArray[np.int16]]
        ) -> AsyncGenerator[AudioEmitType, None]:
            async for output in self._speak(self.host._reply):
                yield output

        def _on_start(self) -> AsyncGenerator[AudioEmitType, None]:
            return self._speak(self.host._greet)

        async def _speak(self, speaker: Speaker[Any]) -> AsyncGenerator[AudioEmitType, None]:
            if self.session_id is None or self.ear is None:
                return
            async for output in speaker(self.session_id, self.ear):
                if isinstance(output, Hush):
                    self.clear_queue()
                    continue
                if isinstance(output, Close):
                    self.host.close_soon(self.session_id)
                    yield CloseStream(output.reason)
                    return
                yield output

    return _Handler
