"""A real WebRTC voice client for end-to-end tests: an aiortc peer that talks to the interview API.

It does what a browser does, minus the browser: fetches the ICE servers, opens a data channel
(fastrtc never calls its handler without one), sends one microphone track and records the one
audio track the server sends back. The microphone plays digital silence until `say()` queues
speech, in real time (20 ms frames of 48 kHz s16 mono), so pause detection on the server sees
what it would see from a person.

Timing is on `time.monotonic()` throughout, so a test can measure the reply latency as
`await client.wait_for_speech(after=utterance.speech_ended_at) - utterance.speech_ended_at`.

    client = await VoiceClient.connect(api, session_id, token)
    try:
        await client.wait_for_reply(timeout=20)              # the interviewer's first question
        said = await client.say(speech("I am a backend engineer."))
        reply = await client.wait_for_reply(after=said.speech_ended_at, timeout=20)
        latency = reply.started_at - said.speech_ended_at
    finally:
        await client.close()

Network: HTTP only to `api_base`, ICE only with the given/fetched ICE servers. An empty
`iceServers` list is passed explicitly when there are none, because aiortc otherwise falls
back to a public Google STUN server.
"""

# The waits take a `timeout` argument (ASYNC109 prefers asyncio.timeout around the call) on
# purpose: their TimeoutError then says what was heard so far, which a bare timeout cannot.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import bisect
import contextlib
import fractions
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

import av
import httpx
import numpy as np
import numpy.typing as npt
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from harness.speech_audio import (
    SAMPLE_RATE,
    SPEECH_RMS,
    as_int16,
    load_wav,
    resample,
    save_wav,
    speech_bounds,
)

FRAME_SECONDS = 0.02
FRAME_SAMPLES = int(SAMPLE_RATE * FRAME_SECONDS)  # 960: one 20 ms Opus frame at 48 kHz

# If the event loop stalls (a slow test step, GC), the microphone would otherwise burst all
# the frames it "owes" at once; the server would get speech faster than real time and the
# measured send times would be wrong. Beyond this lag the clock is re-anchored instead.
_MAX_LAG_SECONDS = 0.2

# How often waiters re-check: the server sends no RTP at all while the interviewer is silent
# (fastrtc only sends when the handler yields audio), so silence can only be seen on the clock.
_POLL_SECONDS = 0.01

AudioInput = npt.ArrayLike | str | os.PathLike[str] | tuple[int, npt.ArrayLike]


class VoiceClientError(Exception):
    """The voice connection could not be set up, or went away while waiting."""


class ApiError(VoiceClientError):
    """An API call of the voice set-up failed; carries the HTTP status and the error JSON."""

    def __init__(self, what: str, status_code: int, body: Any, text: str) -> None:
        self.status_code = status_code
        self.body = body  # the decoded JSON, or None when the body was not JSON
        error = body.get("error") if isinstance(body, dict) else None
        meta = body.get("meta") if isinstance(body, dict) else None
        self.code: str | None = None
        self.message: str | None = None
        if isinstance(error, dict):  # the service's {"error": {"code", "message"}}
            self.code, self.message = error.get("code"), error.get("message")
        elif isinstance(meta, dict):  # bare fastrtc: {"status": "failed", "meta": {"error"}}
            self.code = meta.get("error")
        super().__init__(f"{what}: HTTP {status_code} {self.code or ''}: {text[:500]}")

    @classmethod
    def from_response(cls, what: str, response: httpx.Response) -> Self:
        try:
            body = response.json()
        except ValueError:
            body = None
        return cls(what, response.status_code, body, response.text)


class OfferRejected(ApiError):
    """The server refused the SDP offer (HTTP error, or fastrtc's 200 + status "failed")."""


class ConnectionClosed(VoiceClientError):
    """The peer connection closed (or failed) while a wait was still pending."""


@dataclass
class Utterance:
    """One `say()`: when its speech went out, in `time.monotonic()` seconds."""

    samples: int
    speech_start: int | None  # sample index of the first loud 10 ms window, None if all quiet
    speech_end: int | None  # index just past the last loud window
    queued_at: float
    speech_started_at: float | None = None
    # When the 20 ms frame holding the last speech sample was handed to aiortc's encoder.
    # Frames are released at the wall time of their first sample, so this is the earliest
    # moment the server could have the end of the speech (up to 20 ms before a real mic).
    speech_ended_at: float | None = None
    finished_at: float | None = None  # the trailing silence went out too
    _speech_done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _finished: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def duration(self) -> float:
        return self.samples / SAMPLE_RATE

    async def wait_speech_sent(self, timeout: float) -> float:
        """Wait until the last speech sample was sent; returns `speech_ended_at`
        (or `finished_at` for an utterance without speech)."""
        await asyncio.wait_for(self._speech_done.wait(), timeout)
        moment = self.speech_ended_at if self.speech_ended_at is not None else self.finished_at
        assert moment is not None
        return moment

    async def wait_finished(self, timeout: float) -> float:
        """Wait until the trailing silence was sent too; returns `finished_at`."""
        await asyncio.wait_for(self._finished.wait(), timeout)
        assert self.finished_at is not None
        return self.finished_at


class MicrophoneTrack(MediaStreamTrack):
    """Outgoing audio: silence, or queued utterances, as real-time 20 ms 48 kHz s16 mono frames."""

    kind = "audio"

    def __init__(self, speech_threshold: float = SPEECH_RMS) -> None:
        super().__init__()
        self.speech_threshold = speech_threshold
        # Each entry: (utterance, samples including trailing silence, next position).
        self._queue: list[tuple[Utterance, npt.NDArray[np.int16], int]] = []
        self._start: float | None = None
        self._timestamp = 0
        self.frames_sent = 0
        self.last_speech_sent_at: float | None = None
        self._stalled = asyncio.Event()
        # What the speaker plays comes back into the microphone at this gain (0: a headset,
        # or perfect echo cancellation), mixed into whatever is said.
        self.echo_gain = 0.0
        self._echo: list[npt.NDArray[np.int16]] = []

    def play_back(self, samples: npt.NDArray[np.int16]) -> None:
        """Audio the speaker played (48 kHz mono), to come back as echo."""
        if self.echo_gain > 0:
            self._echo.append(samples)

    @property
    def pending_seconds(self) -> float:
        """Audio queued but not yet sent (speech and trailing silence)."""
        return sum(samples.size - pos for _, samples, pos in self._queue) / SAMPLE_RATE

    def enqueue(self, samples: npt.NDArray[np.int16], trailing_silence: float) -> Utterance:
        bounds = speech_bounds(samples, SAMPLE_RATE, self.speech_threshold)
        audio = np.concatenate(
            [samples, np.zeros(round(trailing_silence * SAMPLE_RATE), dtype=np.int16)]
        )
        utterance = Utterance(
            samples=audio.size,
            speech_start=bounds[0] if bounds else None,
            speech_end=bounds[1] if bounds else None,
            queued_at=time.monotonic(),
        )
        if audio.size == 0:
            utterance.finished_at = utterance.queued_at
            utterance._speech_done.set()
            utterance._finished.set()
        else:
            self._queue.append((utterance, audio, 0))
        return utterance

    def clear(self) -> None:
        """Drop whatever has not been sent yet (the utterances never finish)."""
        self._queue.clear()

    def stall(self) -> None:
        """Send no more audio while the connection (ICE, DTLS) stays up: what the server sees
        of a page that was reloaded or lost its network, until ICE gives up (~30 s)."""
        self._stalled.set()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._stalled.is_set():
            # Forever: aiortc's sender cancels this wait when the connection closes.
            await asyncio.get_running_loop().create_future()
        # Real-time pacing like aiortc's AudioStreamTrack, but on the monotonic clock.
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._timestamp += FRAME_SAMPLES
            wait = self._start + self._timestamp / SAMPLE_RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -_MAX_LAG_SECONDS:
                self._start = time.monotonic() - self._timestamp / SAMPLE_RATE
        now = time.monotonic()
        samples = self._next_samples(now)
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._timestamp
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self.frames_sent += 1
        return frame

    def _next_samples(self, now: float) -> npt.NDArray[np.int16]:
        out = self._next_spoken(now)
        if not self._echo:
            return out
        echo = np.concatenate(self._echo)
        take, rest = echo[:FRAME_SAMPLES], echo[FRAME_SAMPLES:]
        self._echo = [rest] if rest.size else []
        mixed = out.astype(np.float32)
        mixed[: take.size] += take.astype(np.float32) * self.echo_gain
        return np.clip(mixed, -32768, 32767).astype(np.int16)

    def _next_spoken(self, now: float) -> npt.NDArray[np.int16]:
        out = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        filled = 0
        while filled < FRAME_SAMPLES and self._queue:
            utterance, audio, pos = self._queue[0]
            take = min(FRAME_SAMPLES - filled, audio.size - pos)
            out[filled : filled + take] = audio[pos : pos + take]
            end = pos + take
            if utterance.speech_start is not None and pos <= utterance.speech_start < end:
                utterance.speech_started_at = now
            if utterance.speech_end is not None and pos < utterance.speech_end <= end:
                utterance.speech_ended_at = now
                self.last_speech_sent_at = now
                utterance._speech_done.set()
            filled += take
            if end >= audio.size:
                self._queue.pop(0)
                utterance.finished_at = now
                utterance._speech_done.set()  # no-op unless it had no speech at all
                utterance._finished.set()
            else:
                self._queue[0] = (utterance, audio, end)
        return out


@dataclass
class ReceivedFrame:
    arrived_at: float  # time.monotonic() when recv() returned it
    samples: npt.NDArray[np.int16]  # mono
    rms: float


@dataclass
class Reply:
    """One turn of the interviewer: from the first loud frame to the last one."""

    started_at: float
    ended_at: float  # arrival of the last loud frame before the silence
    sample_rate: int
    audio: npt.NDArray[np.int16]  # the frames received in between, concatenated

    @property
    def duration(self) -> float:
        return self.audio.size / self.sample_rate


def _ice_server(entry: RTCIceServer | Mapping[str, Any]) -> RTCIceServer:
    if isinstance(entry, RTCIceServer):
        return entry
    return RTCIceServer(
        urls=entry["urls"], username=entry.get("username"), credential=entry.get("credential")
    )


def _frame_to_mono(frame: av.AudioFrame) -> npt.NDArray[np.int16]:
    """Any decoded frame -> int16 mono. aiortc's Opus decoder gives packed s16 stereo."""
    channels = len(frame.layout.channels)
    data = frame.to_ndarray()
    # -> (samples, channels): planar is one row per channel, packed is interleaved.
    data = data.reshape(channels, -1).T if frame.format.is_planar else data.reshape(-1, channels)
    if np.issubdtype(data.dtype, np.floating):
        data = np.clip(data * 32767.0, -32768, 32767)
    mono: npt.NDArray[np.int16] = (
        data[:, 0].astype(np.int16)
        if channels == 1
        else data.astype(np.int32).mean(axis=1).astype(np.int16)
    )
    return mono


class VoiceClient:
    """One voice session over WebRTC. Build it with `await VoiceClient.connect(...)`."""

    def __init__(
        self,
        pc: RTCPeerConnection,
        channel: RTCDataChannel,
        microphone: MicrophoneTrack,
        *,
        speech_threshold: float = SPEECH_RMS,
    ) -> None:
        self.pc = pc
        self.channel = channel
        self.microphone = microphone
        self.speech_threshold = speech_threshold
        self.messages: list[str] = []  # data channel messages, in arrival order
        self.closed = asyncio.Event()  # set when the connection closes/fails, from either side
        self.close_reason: str | None = None
        self.remote_track_ended = asyncio.Event()
        self.sample_rate: int | None = None  # of the received audio, from the first frame
        self._frames: list[ReceivedFrame] = []
        self._arrivals: list[float] = []  # the frames' arrival times, for bisect
        self._pcm_bytes = 0
        self._receiver: asyncio.Task[None] | None = None
        self._channel_open = asyncio.Event()
        self._connected = asyncio.Event()
        self._closing = False
        self._wire()

    # -- set-up -------------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        api_base: str,
        session_id: str,
        token: str,
        *,
        relay_only: bool = False,
        ice_servers: Sequence[RTCIceServer | Mapping[str, Any]] | None = None,
        connect_timeout: float = 20.0,
        wait_connected: bool = True,
        speech_threshold: float = SPEECH_RMS,
        http: httpx.AsyncClient | None = None,
    ) -> Self:
        """Offer/answer against `{api_base}/{session_id}/rtc/offer` and (by default) wait until
        the peer connection is connected and the data channel open.

        `ice_servers`: RTCIceServer objects or the API's dicts ({"urls", "username",
        "credential"}); when None they are fetched from `/{sid}/ice-servers`.
        `relay_only`: iceTransportPolicy "relay", i.e. only TURN-relayed candidates.
        Raises OfferRejected when the server refuses the offer, VoiceClientError when the
        connection does not come up within `connect_timeout`.
        """
        base = f"{api_base.rstrip('/')}/{session_id}"
        headers = {"Authorization": f"Bearer {token}"}
        # trust_env=False: no proxy from the environment may carry loopback test traffic.
        owned = http is None
        http_client = http or httpx.AsyncClient(timeout=15.0, trust_env=False)
        try:
            if ice_servers is None:
                response = await http_client.get(f"{base}/ice-servers", headers=headers)
                if response.status_code != 200:
                    raise ApiError.from_response("ice-servers refused", response)
                ice_servers = response.json().get("iceServers") or []
            servers = [_ice_server(entry) for entry in ice_servers]
            if relay_only and not any(
                str(url).startswith(("turn:", "turns:"))
                for server in servers
                for url in ([server.urls] if isinstance(server.urls, str) else server.urls)
            ):
                raise VoiceClientError("relay_only needs at least one TURN server")
            pc = RTCPeerConnection(
                RTCConfiguration(
                    # Always a list, never None: None makes aiortc use stun.l.google.com.
                    iceServers=servers,
                    iceTransportPolicy=(
                        RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
                    ),
                    # bundlePolicy stays "balanced" (two gatherings, the unused one is dropped
                    # once the answer bundles): with "max-bundle" aiortc 1.16 never starts ICE
                    # against fastrtc's answer and stays in connectionState "new".
                )
            )
            # The data channel must exist before the offer so it is negotiated in the SDP;
            # fastrtc waits for it before it starts the handler. "text" is the label
            # fastrtc's own browser client uses.
            channel = pc.createDataChannel("text")
            microphone = MicrophoneTrack(speech_threshold)
            pc.addTrack(microphone)  # sendrecv: the server answers with its track on it
            voice = cls(pc, channel, microphone, speech_threshold=speech_threshold)
            try:
                # aiortc gathers every candidate inside setLocalDescription, so the offer is
                # complete and no trickle ICE is needed.
                await pc.setLocalDescription(await pc.createOffer())
                voice._check_candidates(relay_only)
                response = await http_client.post(
                    f"{base}/rtc/offer",
                    headers=headers,
                    json={"sdp": pc.localDescription.sdp, "type": pc.localDescription.type},
                )
                answer = voice._parse_answer(response)
                await pc.setRemoteDescription(
                    RTCSessionDescription(sdp=answer["sdp"], type=answer["type"])
                )
                if wait_connected:
                    await voice.wait_connected(connect_timeout)
            except BaseException:
                await voice.close()
                raise
            return voice
        finally:
            if owned:
                await http_client.aclose()

    def _check_candidates(self, relay_only: bool) -> None:
        """Fail before offering when gathering found nothing usable: with relay_only that
        means the TURN allocation failed (bad credentials, unreachable server), which would
        otherwise only show as a connect timeout."""
        lines = self.pc.localDescription.sdp.splitlines()
        candidates = [line for line in lines if line.startswith("a=candidate:")]
        if relay_only and not any(" typ relay" in line for line in candidates):
            raise VoiceClientError(
                "relay_only: no relay candidate gathered (TURN allocation failed: check the "
                "TURN URL and credentials)"
            )
        if not candidates:
            raise VoiceClientError("no ICE candidates gathered")

    @staticmethod
    def _parse_answer(response: httpx.Response) -> dict[str, Any]:
        rejected = OfferRejected.from_response("offer rejected", response)
        body = rejected.body
        # fastrtc refuses with HTTP 200 and {"status": "failed"}; anything but an answer is
        # a refusal, whatever the status code says.
        if (
            response.status_code >= 400
            or not isinstance(body, dict)
            or body.get("status") == "failed"
            or body.get("type") != "answer"
            or not isinstance(body.get("sdp"), str)
        ):
            raise rejected
        return body

    def _wire(self) -> None:
        pc, channel = self.pc, self.channel

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            if state == "connected":
                self._connected.set()
            elif state in ("failed", "closed"):
                self._mark_closed(f"connection {state}")

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and self._receiver is None:
                self._receiver = asyncio.ensure_future(self._receive(track))

        @channel.on("open")
        def on_open() -> None:
            self._channel_open.set()

        @channel.on("message")
        def on_message(message: str | bytes) -> None:
            self.messages.append(
                message.decode(errors="replace") if isinstance(message, bytes) else message
            )

        @channel.on("close")
        def on_channel_close() -> None:
            # The server closing the session closes SCTP first; DTLS/ICE may linger.
            self._mark_closed("data channel closed")

    def _mark_closed(self, reason: str) -> None:
        if not self.closed.is_set():
            self.close_reason = "closed by client" if self._closing else reason
            self.closed.set()

    async def wait_connected(self, timeout: float) -> None:
        """Until ICE+DTLS are connected and the data channel is open."""
        ready = asyncio.gather(self._connected.wait(), self._channel_open.wait())
        closed = asyncio.ensure_future(self.closed.wait())
        waiting: set[asyncio.Future[Any]] = {ready, closed}
        try:
            done, _ = await asyncio.wait(
                waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closed.cancel()
        if ready not in done:
            ready.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ready
            raise VoiceClientError(
                f"not connected after {timeout}s: connectionState={self.pc.connectionState}, "
                f"iceConnectionState={self.pc.iceConnectionState}, "
                f"channel={self.channel.readyState}, closed={self.close_reason}"
            )

    # -- sending --------------------------------------------------------------------------

    async def say(
        self,
        audio: AudioInput,
        *,
        trailing_silence: float = 1.5,
        sample_rate: int = SAMPLE_RATE,
        wait: bool = True,
    ) -> Utterance:
        """Queue speech (then `trailing_silence` seconds of silence) on the microphone.

        `audio`: int16/float samples at `sample_rate`, a `(sample_rate, samples)` tuple, or a
        WAV path; anything not at 48 kHz is resampled. With `wait` (the default) returns once
        the last speech sample was sent, so `utterance.speech_ended_at` is set; otherwise at
        once. The trailing silence keeps a following `say()` from running into this one.
        """
        self._check_open("say()")
        samples = self._as_48k(audio, sample_rate)
        utterance = self.microphone.enqueue(samples, trailing_silence)
        if wait:
            # Everything queued ahead plays first, in real time; allow for that plus slack.
            limit = self.microphone.pending_seconds + 10.0
            await self._until(utterance.wait_speech_sent(limit), "the utterance was sent")
        return utterance

    @staticmethod
    def _as_48k(audio: AudioInput, sample_rate: int) -> npt.NDArray[np.int16]:
        if isinstance(audio, str | os.PathLike):
            sample_rate, samples = load_wav(audio)
        elif isinstance(audio, tuple):
            sample_rate, samples = int(audio[0]), as_int16(audio[1])
        else:
            samples = as_int16(audio)
        return resample(samples, sample_rate, SAMPLE_RATE)

    @property
    def last_speech_sent_at(self) -> float | None:
        """`time.monotonic()` when the last speech sample of any utterance was sent."""
        return self.microphone.last_speech_sent_at

    def send_message(self, text: str | Mapping[str, Any]) -> None:
        """Send on the data channel; mappings are sent as JSON."""
        self.channel.send(text if isinstance(text, str) else json.dumps(text))

    # -- receiving ------------------------------------------------------------------------

    async def _receive(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                arrived = time.monotonic()
                assert isinstance(frame, av.AudioFrame)
                samples = _frame_to_mono(frame)
                if self.sample_rate is None:
                    self.sample_rate = frame.sample_rate
                self.microphone.play_back(resample(samples, frame.sample_rate, SAMPLE_RATE))
                rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
                self._frames.append(ReceivedFrame(arrived, samples, rms))
                self._pcm_bytes += samples.nbytes
                self._arrivals.append(arrived)
        except MediaStreamError:
            # The remote track ended: the server stopped its sender or the connection closed.
            self.remote_track_ended.set()

    @property
    def frames_received(self) -> int:
        return len(self._frames)

    @property
    def bytes_received(self) -> int:
        """Decoded audio received, as bytes of int16 mono PCM (see `inbound_rtp_stats` for
        the bytes on the wire)."""
        return self._pcm_bytes

    @property
    def frames(self) -> list[ReceivedFrame]:
        """Every received frame so far (a copy of the list; the frames are shared)."""
        return list(self._frames)

    async def inbound_rtp_stats(self) -> dict[str, int]:
        """packetsReceived / packetsLost / jitter of the incoming audio RTP stream, from
        getStats (aiortc 1.16 reports no bytesReceived for inbound RTP)."""
        stats = await self.pc.getStats()
        for report in stats.values():
            if getattr(report, "type", None) == "inbound-rtp":
                return {
                    "packetsReceived": int(report.packetsReceived),
                    "packetsLost": int(report.packetsLost),
                    "jitter": int(report.jitter),
                }
        return {"packetsReceived": 0, "packetsLost": 0, "jitter": 0}

    def received_audio(
        self, since: float | None = None, until: float | None = None
    ) -> tuple[int, npt.NDArray[np.int16]]:
        """(sample_rate, samples) of the frames that arrived in [since, until].

        Frames are concatenated as received: the server sends nothing while silent, so gaps
        between turns do not appear as silence here.
        """
        lo = 0 if since is None else bisect.bisect_left(self._arrivals, since)
        hi = len(self._frames) if until is None else bisect.bisect_right(self._arrivals, until)
        parts = [frame.samples for frame in self._frames[lo:hi]]
        audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)
        return self.sample_rate or SAMPLE_RATE, audio

    def save_received(self, path: str | os.PathLike[str]) -> None:
        """Write everything received so far as a WAV (for a failed test's artifacts)."""
        rate, audio = self.received_audio()
        save_wav(path, audio, rate)

    def _first_loud_after(self, after: float | None, threshold: float) -> ReceivedFrame | None:
        start = 0 if after is None else bisect.bisect_right(self._arrivals, after)
        for frame in self._frames[start:]:
            if frame.rms > threshold:
                return frame
        return None

    def _last_loud_after(self, after: float | None, threshold: float) -> ReceivedFrame | None:
        start = 0 if after is None else bisect.bisect_right(self._arrivals, after)
        for frame in reversed(self._frames[start:]):
            if frame.rms > threshold:
                return frame
        return None

    async def wait_for_speech(
        self, timeout: float, after: float | None = None, threshold: float | None = None
    ) -> float:
        """Arrival time of the first received frame louder than `threshold` (RMS) that arrived
        after `after` (any time when None). Raises TimeoutError, or ConnectionClosed if the
        connection closes before that."""
        level = self.speech_threshold if threshold is None else threshold
        deadline = time.monotonic() + timeout
        while True:
            frame = self._first_loud_after(after, level)
            if frame is not None:
                return frame.arrived_at
            self._check_open("speech")
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"no speech (RMS > {level}) received within {timeout}s; "
                    f"{self.frames_received} frames so far, loudest "
                    f"{max((f.rms for f in self._frames), default=0.0):.0f}"
                )
            await asyncio.sleep(_POLL_SECONDS)

    async def wait_for_silence(
        self,
        seconds_of_silence: float,
        timeout: float,
        after: float | None = None,
        threshold: float | None = None,
    ) -> float:
        """Wait until no loud frame has arrived for `seconds_of_silence`; returns the arrival
        time of the last loud frame after `after` (or the reference time when there was none:
        `after`, else the time of the call).

        Usual use, after the interviewer started talking at `t`:
        `end = await client.wait_for_silence(1.0, timeout=30, after=t)`.
        """
        level = self.speech_threshold if threshold is None else threshold
        called = time.monotonic()
        deadline = called + timeout
        reference = called if after is None else after
        while True:
            last = self._last_loud_after(after, level)
            quiet_since = max(reference, last.arrived_at) if last else reference
            now = time.monotonic()
            if now - quiet_since >= seconds_of_silence:
                return quiet_since
            if self.closed.is_set():
                # Nothing more can arrive, so it is as silent as it will ever be.
                return quiet_since
            if now >= deadline:
                raise TimeoutError(
                    f"still hearing speech after {timeout}s (last loud frame "
                    f"{now - quiet_since:.2f}s ago)"
                )
            await asyncio.sleep(_POLL_SECONDS)

    async def wait_for_reply(
        self,
        timeout: float = 30.0,
        after: float | None = None,
        silence: float = 1.0,
        threshold: float | None = None,
    ) -> Reply:
        """The next interviewer turn after `after`: waits for speech, then for `silence`
        seconds without it. `timeout` bounds the whole wait."""
        deadline = time.monotonic() + timeout
        started = await self.wait_for_speech(timeout, after=after, threshold=threshold)
        # Start the silence search just before the first loud frame, so it is included.
        ended = await self.wait_for_silence(
            silence,
            max(0.0, deadline - time.monotonic()) + silence,
            after=started - 1e-6,
            threshold=threshold,
        )
        rate, audio = self.received_audio(since=started, until=ended)
        return Reply(started_at=started, ended_at=ended, sample_rate=rate, audio=audio)

    # -- data channel -----------------------------------------------------------------------

    def json_messages(self) -> list[Any]:
        """The data channel messages that are JSON, decoded (others skipped)."""
        decoded: list[Any] = []
        for message in self.messages:
            with contextlib.suppress(ValueError):
                decoded.append(json.loads(message))
        return decoded

    async def wait_for_message(
        self, predicate: Callable[[str], bool] | str, timeout: float, start: int = 0
    ) -> str:
        """The first data channel message (from index `start`) matching `predicate`, or
        containing it when it is a string."""
        test: Callable[[str], bool]
        if isinstance(predicate, str):
            needle = predicate

            def test(message: str) -> bool:
                return needle in message
        else:
            test = predicate
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages[start:]:
                if test(message):
                    return message
            self._check_open("a data channel message")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no matching message within {timeout}s: {self.messages!r}")
            await asyncio.sleep(_POLL_SECONDS)

    # -- state and teardown ------------------------------------------------------------------

    @property
    def connection_state(self) -> str:
        return str(self.pc.connectionState)

    def _check_open(self, waiting_for: str) -> None:
        if self.closed.is_set():
            raise ConnectionClosed(f"connection closed ({self.close_reason}) before {waiting_for}")

    async def _until(self, waiting: Any, what: str) -> Any:
        """Await `waiting` unless the connection closes first."""
        task = asyncio.ensure_future(waiting)
        closed = asyncio.ensure_future(self.closed.wait())
        try:
            done, _ = await asyncio.wait({task, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ConnectionClosed(f"connection closed ({self.close_reason}) before {what}")

    async def close(self) -> None:
        """Close the data channel, tracks and peer connection. Safe to call twice."""
        self._closing = True
        self.microphone.clear()
        with contextlib.suppress(Exception):
            self.channel.close()
        await self.pc.close()  # also stops the microphone and ends the remote track
        if self._receiver is not None:
            self._receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiver
        self._mark_closed("closed by client")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def start_session(
    api_base: str, user_id: str = "voice-test", **extra: Any
) -> tuple[str, str]:
    """POST /start; returns (session_id, token). Extra fields go into the JSON body."""
    async with httpx.AsyncClient(timeout=15.0, trust_env=False) as client:
        response = await client.post(
            f"{api_base.rstrip('/')}/start", json={"user_id": user_id, **extra}
        )
        response.raise_for_status()
        body = response.json()
        return str(body["session_id"]), str(body["token"])
