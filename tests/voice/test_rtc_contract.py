"""What interview/voice/rtc.py relies on in fastrtc, checked one internal per test, with a real
aiortc peer on loopback and no server process, models or browser.

When a fastrtc upgrade changes one of these, its test fails here with the internal in its name
(and in the assertion message), instead of an interview going silent somewhere else.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from numpy.typing import NDArray

from harness.voice_client import MicrophoneTrack, VoiceClient
from interview.turn_credentials import IceServer
from interview.voice.errors import AlreadyConnected, AtCapacity, InvalidCandidate, NoConnection
from interview.voice.rtc import (
    Close,
    Hush,
    IceConfig,
    Output,
    RtcHost,
    _refusal,
)

OUTPUT_RATE = 24_000
INPUT_RATE = 16_000
WAIT = 15.0  # seconds; only reached when something is broken


def tone(seconds: float, hz: float = 440.0) -> NDArray[np.float32]:
    t = np.arange(int(seconds * OUTPUT_RATE)) / OUTPUT_RATE
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32).reshape(1, -1)


@dataclass
class CountingEar:
    """An Ear that ends the candidate's "answer" after `answer_frames` calls of audio."""

    session_id: str
    answer_frames: int = 25  # 0.5 s of 20 ms frames
    heard: list[tuple[float, int, np.dtype]] = field(default_factory=list)  # (at, samples, dtype)
    resets: int = 0

    def hear(self, samples: NDArray[np.int16]) -> bool:
        self.heard.append((time.monotonic(), samples.size, samples.dtype))
        return len(self.heard) % self.answer_frames == 0

    def reset(self) -> None:
        self.resets += 1


@dataclass
class Script:
    """The greeting and replies the host speaks, and when each ran."""

    greeting_seconds: float = 0.4
    reply_seconds: float = 0.6
    # After its audio, the reply stays "responding" this long (the pipeline waits for playout).
    reply_hold: float = 1.0
    close_after_reply: bool = False
    # Seconds after the reply's audio is handed over that it yields Hush; None never.
    hush_after: float | None = None
    greeted: list[str] = field(default_factory=list)
    replies: list[tuple[str, float, float]] = field(default_factory=list)  # (session, start, end)

    async def greet(self, session_id: str, ear: CountingEar) -> AsyncIterator[Output]:
        self.greeted.append(session_id)
        yield (OUTPUT_RATE, tone(self.greeting_seconds))

    async def reply(self, session_id: str, ear: CountingEar) -> AsyncIterator[Output]:
        started = time.monotonic()
        yield (OUTPUT_RATE, tone(self.reply_seconds, hz=660.0))
        if self.hush_after is not None:
            await asyncio.sleep(self.hush_after)
            yield Hush()
        await asyncio.sleep(self.reply_hold)
        self.replies.append((session_id, started, time.monotonic()))
        if self.close_after_reply:
            yield Close("the interview is complete")


@dataclass
class Host:
    rtc: RtcHost[CountingEar]
    script: Script
    ears: dict[str, CountingEar]


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def host(script: Script) -> Iterator[Host]:
    ears: dict[str, CountingEar] = {}

    def ear_for(session_id: str) -> CountingEar:
        ears[session_id] = CountingEar(session_id)
        return ears[session_id]

    rtc = RtcHost(
        ear_for=ear_for,
        greet=script.greet,
        reply=script.reply,
        capacity=2,
        input_rate=INPUT_RATE,
        output_rate=OUTPUT_RATE,
    )
    yield Host(rtc, script, ears)


async def until(condition: Callable[[], bool], what: str) -> None:
    """Polled: these are fastrtc's and the script's plain attributes, with no event to await."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.05)


async def offer_sdp() -> tuple[RTCPeerConnection, VoiceClient]:
    """A browser-like peer: microphone track and data channel, ICE with no servers (loopback)."""
    from aiortc import RTCConfiguration

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channel = pc.createDataChannel("text")
    microphone = MicrophoneTrack()
    pc.addTrack(microphone)
    client = VoiceClient(pc, channel, microphone)
    await pc.setLocalDescription(await pc.createOffer())
    return pc, client


async def connect(host: Host, session_id: str, ice: IceConfig | None = None) -> VoiceClient:
    pc, client = await offer_sdp()
    answer = await host.rtc.offer(session_id, pc.localDescription.sdp, ice or IceConfig())
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer.sdp, type=answer.type))
    await client.wait_connected(WAIT)
    return client


async def test_stream_offer_copies_the_handler_per_connection_and_keys_it_by_session(host: Host):
    """fastrtc: Stream.offer (the /webrtc/offer front door) answers; Stream.pcs and
    Stream.handlers hold the connection under its webrtc_id; ReplyOnPause.copy() is called once
    per connection (each gets its own Ear, made for its session)."""
    a = await connect(host, "session-a")
    b = await connect(host, "session-b")
    try:
        assert host.rtc.state("session-a") == "connected", "Stream.pcs[webrtc_id]"
        assert host.rtc.ear("session-a") is host.ears["session-a"], "Stream.handlers[webrtc_id]"
        assert host.rtc.ear("session-b") is host.ears["session-b"]
        assert host.rtc.ear("session-a") is not host.rtc.ear("session-b"), "ReplyOnPause.copy()"
        assert host.rtc.live() == 2
        assert sorted(host.rtc.open_sessions()) == ["session-a", "session-b"]
    finally:
        await a.close()
        await b.close()


async def test_startup_fn_speaks_once_per_connection_before_any_answer(host: Host):
    """fastrtc: ReplyOnPause's startup_fn runs once when the connection starts, and what it
    yields is sent like a reply."""
    client = await connect(host, "greeted")
    try:
        heard_at = await client.wait_for_speech(WAIT, threshold=1000)
        assert host.script.greeted == ["greeted"], "startup_fn"
        assert host.script.replies == []
        assert heard_at > 0
    finally:
        await client.close()


async def test_process_audio_hands_over_a_turn_and_an_answer_ended_while_responding_follows(
    host: Host,
):
    """fastrtc: ReplyOnPause.process_audio(audio, state) receives 16 kHz mono frames; setting
    state.pause_detected (with state.stream) starts the reply fn, whose audio is sent;
    state.responding is true while it runs; reset() after it clears state and event, and the
    adapter hands over an answer that ended meanwhile (our receive() hears throughout)."""
    client = await connect(host, "talker")
    try:
        greeting = await client.wait_for_reply(WAIT, silence=0.3, threshold=1000)
        # The microphone sends (silence) all along: the ear ends an "answer" every 25 frames,
        # so several end while each reply runs (0.6 s of audio, then 1 s held).
        await until(lambda: len(host.script.replies) >= 2, "state.pause_detected: the reply fn")
        await client.wait_for_speech(WAIT, after=greeting.ended_at, threshold=1000)
        ear = host.ears["talker"]
        assert {dtype for _, _, dtype in ear.heard} == {np.dtype(np.int16)}
        # 16 kHz: the samples heard between two frames match the time between them.
        _, started, ended = host.script.replies[0]
        window = [(at, n) for at, n, _ in ear.heard if at < ended]
        span = window[-1][0] - window[0][0]
        assert span > 0.3
        rate = sum(n for _, n in window[1:]) / span
        assert 0.7 * INPUT_RATE < rate < 1.3 * INPUT_RATE, f"{rate:.0f} samples/s"
        during = sum(n for at, n, _ in ear.heard if started < at < ended)
        # A deaf ear (fastrtc's own default while responding) hears nothing then; on a busy
        # machine frames arrive in bursts, so part of this window's audio may land after it
        # (measured: 37 % of it inside in a full CI run).
        assert during > 0.25 * (ended - started) * INPUT_RATE, "receive() hears while responding"
        # One reply at a time (state.responding), the next right after (reset() re-armed).
        (_, _, first_end), (_, second_start, _) = host.script.replies[:2]
        assert first_end <= second_start < first_end + 0.5, "reset(): the pending answer"
    finally:
        await client.close()


async def test_clear_queue_drops_audio_queued_for_sending(host: Host, script: Script):
    """fastrtc: the handler's clear_queue() (the track's callback) drops the frames queued for
    sending: a reply that yields Hush stops being heard at once."""
    script.reply_seconds = 3.0
    script.hush_after = 0.3
    client = await connect(host, "hushed")
    try:
        greeting = await client.wait_for_reply(WAIT, silence=0.3, threshold=1000)
        reply = await client.wait_for_reply(
            WAIT, after=greeting.ended_at, silence=0.5, threshold=1000
        )
        heard = reply.ended_at - reply.started_at
        # 3 s were queued in one piece; Hush came 0.3 s later.
        assert heard < 1.2, f"clear_queue(): {heard:.2f} s of a 3 s reply still played"
    finally:
        await client.close()


async def test_close_stream_ends_the_stream_and_the_connection_closes(host: Host):
    """fastrtc: a CloseStream yielded by the reply sends "end_stream" on the data channel; the
    adapter then closes the peer connection itself."""
    host.script.close_after_reply = True
    client = await connect(host, "closing")
    try:
        message = await client.wait_for_message("end_stream", WAIT)
        assert "the interview is complete" in message
        await asyncio.wait_for(client.closed.wait(), WAIT)
        await until(lambda: host.rtc.open_sessions() == [], "the connection closed")
    finally:
        await client.close()


async def test_a_closed_connection_is_cleaned_up_by_id_before_the_next_offer(host: Host):
    """fastrtc: a connection that closes is removed from Stream.pcs and Stream.handlers by its
    webrtc_id from fastrtc's own state-change handler; after RtcHost.discard the same session
    connects again, and the late clean-up does not remove the new connection."""
    first = await connect(host, "again")
    await host.rtc.close("again")
    await asyncio.wait_for(first.closed.wait(), WAIT)
    await host.rtc.discard("again")
    assert not host.rtc.has_leftovers("again"), "Stream.clean_up(webrtc_id)"
    second = await connect(host, "again")
    try:
        await asyncio.sleep(0.5)  # any late clean-up of the first connection has run by now
        assert host.rtc.state("again") == "connected"
        assert host.rtc.ear("again") is host.ears["again"]
    finally:
        await first.close()
        await second.close()


async def test_stream_offer_refusals_are_json_with_status_failed(host: Host):
    """fastrtc: Stream.offer refuses with HTTP 200 and {"status": "failed", "meta": {"error"}}
    (connection_already_exists, concurrency_limit_reached, unknown_connection,
    invalid_candidate_format); the adapter maps them to our errors."""
    from fastrtc.stream import Body

    stream = host.rtc._stream
    client = await connect(host, "one")
    try:
        pc, _ = await offer_sdp()
        sdp = pc.localDescription.sdp
        again = await stream.offer(Body(sdp=sdp, type="offer", webrtc_id="one"))
        assert _refusal(again) == "connection_already_exists"
        with pytest.raises(AlreadyConnected):
            await host.rtc.offer("one", sdp, IceConfig())

        unknown = await stream.offer(
            Body(type="ice-candidate", webrtc_id="nobody", candidate={"candidate": "x"})
        )
        assert _refusal(unknown) == "unknown_connection"
        with pytest.raises(NoConnection):
            await host.rtc.add_candidate(
                "nobody", "candidate:1 1 udp 1 127.0.0.1 9 typ host", "0", 0
            )
        short = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host"  # aiortc's 8 tokens
        with pytest.raises(InvalidCandidate, match="invalid_candidate_format"):
            await host.rtc.add_candidate("one", short, "0", 0)
        # The end-of-candidates marker is accepted and ignored.
        await host.rtc.add_candidate("one", "", "0", 0)

        second = await connect(host, "two")
        third, _ = await offer_sdp()
        over = await stream.offer(
            Body(sdp=third.localDescription.sdp, type="offer", webrtc_id="three")
        )
        assert _refusal(over) == "concurrency_limit_reached"
        with pytest.raises(AtCapacity):
            await host.rtc.offer("three", third.localDescription.sdp, IceConfig())
        await second.close()
        await pc.close()
        await third.close()
    finally:
        await client.close()


async def test_server_rtc_configuration_is_read_per_offer_in_the_offering_task(
    host: Host, monkeypatch: pytest.MonkeyPatch
):
    """fastrtc: Stream.offer builds the RTCPeerConnection from self.server_rtc_configuration
    (read in the task handling the offer), so each session gets its own ICE servers, even when
    offers overlap."""
    import fastrtc.webrtc_connection_mixin as mixin

    made: dict[str, list[str]] = {}
    real = mixin.RTCPeerConnection

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, configuration=None):
            urls = [u for s in (configuration.iceServers or []) for u in s.urls]
            made[urls[0].split("@")[-1] if urls else "none"] = urls
            # Loopback only in the test: the servers above are never contacted.
            super().__init__(configuration=type(configuration)(iceServers=[]))

    monkeypatch.setattr(mixin, "RTCPeerConnection", Recording)

    def ice(name: str) -> IceConfig:
        return IceConfig(servers=[IceServer([f"turn:{name}"], "user", "secret")])

    a_pc, _ = await offer_sdp()
    b_pc, _ = await offer_sdp()
    await asyncio.gather(
        host.rtc.offer("a", a_pc.localDescription.sdp, ice("relay-a.test:3478")),
        host.rtc.offer("b", b_pc.localDescription.sdp, ice("relay-b.test:3478")),
    )
    assert made == {
        "turn:relay-a.test:3478": ["turn:relay-a.test:3478"],
        "turn:relay-b.test:3478": ["turn:relay-b.test:3478"],
    }, "server_rtc_configuration"
    for sid in ("a", "b"):
        await host.rtc.discard(sid)
    await a_pc.close()
    await b_pc.close()
