"""Spoken interviews end to end: a real aiortc peer signals through the REST routes, speaks
espeak-ng audio into a voice-enabled server, and listens to what comes back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import numpy as np
import pytest

from harness.app_server import AppServer
from harness.speech_audio import answer_with_pause, speech
from harness.sse import read_events
from harness.voice_client import VoiceClient, start_session
from interview.voice.gateway import MEDIA_STALE_SECONDS
from tests.api.helpers import auth
from tests.e2e.conftest import recall

Transcribe = Callable[[int, np.ndarray], str]

GREETING = "Hello, welcome to your practice interview. Tell me about a project you are proud of."
FIRST_HALF = "I built a billing service in Python for our shop"
SECOND_HALF = "and I made it reliable with careful tests and alerts"
NEXT_QUESTION = "How do you debug a failing service?"


async def transcript(server: AppServer, sid: str, token: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=server.api, timeout=10) as client:
        response = await client.get(f"/{sid}/transcript", headers=auth(token))
        return response.json()["turns"]


async def status(server: AppServer, sid: str, token: str) -> dict:
    async with httpx.AsyncClient(base_url=server.api, timeout=10) as client:
        return (await client.get(f"/{sid}/status", headers=auth(token))).json()


async def test_a_spoken_turn_end_to_end(voice_server: AppServer, transcribe: Transcribe):
    sid, token = await start_session(voice_server.api, plan_id="quick-engineer")
    client = await VoiceClient.connect(voice_server.api, sid, token)
    try:
        # The interviewer speaks first, and what it says is the plan's opening line.
        greeting = await client.wait_for_reply(timeout=40)
        heard = transcribe(greeting.sample_rate, greeting.audio)
        assert recall(GREETING, heard) >= 0.7, heard
        assert client.bytes_received > 0

        # An answer with a 0.7 s pause in the middle is still one answer. The first half is a
        # finished sentence, so the interviewer may start to reply in the pause; the candidate
        # going on withdraws that reply (kept, marked) and the answer stays one.
        said = await client.say(answer_with_pause(FIRST_HALF, SECOND_HALF, pause=0.7))
        reply = await client.wait_for_reply(after=said.speech_ended_at, timeout=40)
        heard_reply = transcribe(reply.sample_rate, reply.audio)
        assert recall(NEXT_QUESTION, heard_reply) >= 0.6, heard_reply

        everything = await transcript(voice_server, sid, token)
        turns = [t for t in everything if t["interruption"] != "withdrawn"]
        assert len(everything) - len(turns) <= 1
        assert [t["role"] for t in turns] == ["interviewer", "candidate", "interviewer"]
        answer = turns[1]
        assert answer["source"] == "voice"
        assert recall(f"{FIRST_HALF} {SECOND_HALF}", answer["text"]) >= 0.8, answer["text"]
        assert answer["ended_at"] > answer["started_at"]
        assert turns[2]["text"].endswith(NEXT_QUESTION)
        assert turns[2]["source"] == "voice"  # marked spoken, with when it played
        live = await status(voice_server, sid, token)
        assert (live["status"], live["connection_state"]) == ("active", "connected")

        # The live events carried the same turns.
        async with (
            httpx.AsyncClient(base_url=voice_server.api, timeout=40) as http,
            http.stream("GET", f"/{sid}/events", headers=auth(token)) as response,
        ):
            seen: list[tuple[int, str]] = []
            async for event in read_events(response):
                if event.event == "turn":
                    seen.append((event.data["index"], event.data["role"]))
                if len(seen) == 3:
                    break
        assert seen == [(0, "interviewer"), (1, "candidate"), (2, "interviewer")]

        # Ending the interview closes the connection.
        async with httpx.AsyncClient(base_url=voice_server.api, timeout=10) as http:
            assert (await http.post(f"/{sid}/end", headers=auth(token))).status_code == 200
        await asyncio.wait_for(client.closed.wait(), timeout=10)
        ended = await status(voice_server, sid, token)
        assert (ended["status"], ended["connection_state"]) == ("ended", "closed")
    finally:
        await client.close()


async def run_interview(server: AppServer, plan_id: str, answer: str, transcribe: Transcribe):
    sid, token = await start_session(server.api, plan_id=plan_id)
    client = await VoiceClient.connect(server.api, sid, token)
    try:
        # Two sessions share two cores: allow the interviewer a breath between sentences.
        greeting = await client.wait_for_reply(timeout=60, silence=2.0)
        said = await client.say(speech(answer))
        await client.wait_for_reply(after=said.speech_ended_at, timeout=60)
        return sid, token, transcribe(greeting.sample_rate, greeting.audio)
    finally:
        await client.close()


async def test_two_sessions_at_once_never_mix(voice_server: AppServer, transcribe: Transcribe):
    engineer_answer = "I wrote a compiler for a tiny language and tuned its register allocator"
    support_answer = "I listen to the customer first and I apologize sincerely for the trouble"
    (e_sid, e_token, e_greeting), (s_sid, s_token, s_greeting) = await asyncio.gather(
        run_interview(voice_server, "quick-engineer", engineer_answer, transcribe),
        run_interview(voice_server, "quick-support", support_answer, transcribe),
    )
    assert recall("welcome to your practice interview", e_greeting) >= 0.6, e_greeting
    assert recall("thanks for joining the support screen", s_greeting) >= 0.6, s_greeting
    assert recall("support screen", e_greeting) < 0.5 and recall("practice", s_greeting) == 0

    engineer = await transcript(voice_server, e_sid, e_token)
    support = await transcript(voice_server, s_sid, s_token)
    assert recall(engineer_answer, engineer[1]["text"]) >= 0.8
    assert recall(support_answer, support[1]["text"]) >= 0.8
    assert recall("customer apologize", engineer[1]["text"]) == 0
    assert recall("compiler allocator", support[1]["text"]) == 0


async def test_a_dropped_connection_resumes_the_interview(
    voice_server: AppServer, transcribe: Transcribe
):
    sid, token = await start_session(voice_server.api, plan_id="quick-engineer")
    first = await VoiceClient.connect(voice_server.api, sid, token)
    await first.wait_for_reply(timeout=40)
    said = await first.say(speech("I stay calm, I listen and I repeat their problem back to them"))
    await first.wait_for_reply(after=said.speech_ended_at, timeout=40)
    await first.close()  # the candidate's network drops
    before = await transcript(voice_server, sid, token)

    second = await VoiceClient.connect(voice_server.api, sid, token)
    try:
        again = await second.wait_for_reply(timeout=40)
        # The interviewer repeats where it was: its latest line, not the greeting.
        heard = transcribe(again.sample_rate, again.audio)
        assert recall(before[-1]["text"], heard) >= 0.6, heard
        assert recall("welcome to your practice interview", heard) < 0.5
        assert await transcript(voice_server, sid, token) == before  # nothing lost or doubled
    finally:
        await second.close()


async def test_a_connection_whose_audio_stopped_is_taken_over_by_a_new_offer(
    voice_server: AppServer, transcribe: Transcribe
):
    """A reloaded page or a dead network: no more audio, though ICE still says "connected"
    for ~30 s. The session's next offer replaces that connection rather than get 409 for as
    long, which would outlast a browser client's reconnect attempts."""
    sid, token = await start_session(voice_server.api, plan_id="quick-engineer")
    first = await VoiceClient.connect(voice_server.api, sid, token)
    try:
        await first.wait_for_reply(timeout=40)  # the greeting and first question
        before = await transcript(voice_server, sid, token)
        first.microphone.stall()
        # At once it is still the session's live connection: a second offer is refused.
        refused = await offer(
            voice_server,
            sid,
            token,
            {"sdp": await aiortc_offer(audio=True, data_channel=True), "type": "offer"},
        )
        assert refused.status_code == 409, refused.text
        await asyncio.sleep(MEDIA_STALE_SECONDS + 1.0)
        assert not first.closed.is_set()  # ICE has not noticed anything
        second = await VoiceClient.connect(voice_server.api, sid, token)
        try:
            again = await second.wait_for_reply(timeout=40)
            heard = transcribe(again.sample_rate, again.audio)
            assert recall(before[-1]["text"], heard) >= 0.6, heard
            await asyncio.wait_for(first.closed.wait(), timeout=15)  # the old one was hung up
            assert await transcript(voice_server, sid, token) == before
            assert "voice_connection_taken_over" in voice_server.log()
        finally:
            await second.close()
    finally:
        await first.close()


# Bad input: every refusal is a clear JSON error, and nothing breaks for the session.


async def offer(server: AppServer, sid: str, token: str, body: dict) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.api, timeout=30) as http:
        return await http.post(f"/{sid}/rtc/offer", json=body, headers=auth(token))


async def aiortc_offer(*, audio: bool, data_channel: bool) -> str:
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.mediastreams import AudioStreamTrack

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        if data_channel:
            pc.createDataChannel("text")
        if audio:
            pc.addTrack(AudioStreamTrack())
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"sdp": "hello", "type": "offer"}, "v=0"),
        ({"sdp": "v=0\r\nthis is not sdp\r\nm=audio x\r\nm=application y", "type": "offer"}, "SDP"),
        ({"sdp": "v=0", "type": "answer"}, "offer"),
    ],
)
async def test_malformed_offers_are_400(voice_server: AppServer, body: dict, words: str):
    sid, token = await start_session(voice_server.api)
    response = await offer(voice_server, sid, token, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_offer"
    assert words in response.json()["error"]["message"]
    assert (await status(voice_server, sid, token))["connection_state"] == "none"


async def test_offers_without_audio_or_data_channel_are_400(voice_server: AppServer):
    sid, token = await start_session(voice_server.api)
    no_audio = await offer(
        voice_server,
        sid,
        token,
        {"sdp": await aiortc_offer(audio=False, data_channel=True), "type": "offer"},
    )
    assert no_audio.status_code == 400 and "no audio" in no_audio.json()["error"]["message"]
    no_channel = await offer(
        voice_server,
        sid,
        token,
        {"sdp": await aiortc_offer(audio=True, data_channel=False), "type": "offer"},
    )
    assert no_channel.status_code == 400
    assert "data channel" in no_channel.json()["error"]["message"]


async def test_signaling_refusals(voice_server: AppServer):
    sid, token = await start_session(voice_server.api)
    other_sid, other_token = await start_session(voice_server.api)
    async with httpx.AsyncClient(base_url=voice_server.api, timeout=30) as http:
        # Before any offer there is no answer and no connection to add candidates to.
        assert (await http.post(f"/{sid}/rtc/answer", headers=auth(token))).status_code == 404
        candidate = {
            "candidate": "candidate:1 1 udp 2122260223 10.9.9.9 5000 typ host generation 0 "
            "ufrag x network-id 1",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
        }
        unknown = await http.post(f"/{sid}/rtc/ice-candidate", json=candidate, headers=auth(token))
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "no_connection"
        # Someone else's session: the same 404 as an unknown one.
        sdp = await aiortc_offer(audio=True, data_channel=True)
        theirs = await http.post(
            f"/{other_sid}/rtc/offer", json={"sdp": sdp, "type": "offer"}, headers=auth(token)
        )
        assert theirs.status_code == 404
        assert (await status(voice_server, other_sid, other_token))["connection_state"] == "none"

    client = await VoiceClient.connect(voice_server.api, sid, token)
    try:
        async with httpx.AsyncClient(base_url=voice_server.api, timeout=30) as http:
            answer = await http.post(f"/{sid}/rtc/answer", headers=auth(token))
            assert answer.status_code == 200 and answer.json()["type"] == "answer"
            bad = await http.post(
                f"/{sid}/rtc/ice-candidate",
                json={"candidate": "candidate:garbage", "sdpMid": "0", "sdpMLineIndex": 0},
                headers=auth(token),
            )
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_candidate"
            done = await http.post(
                f"/{sid}/rtc/ice-candidate",
                json={"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0},
                headers=auth(token),
            )
            assert done.status_code == 200  # the end-of-candidates marker
            # One live connection per session.
            again = await http.post(
                f"/{sid}/rtc/offer",
                json={"sdp": await aiortc_offer(audio=True, data_channel=True), "type": "offer"},
                headers=auth(token),
            )
            assert again.status_code == 409
            assert again.json()["error"]["code"] == "already_connected"
            await http.post(f"/{sid}/end", headers=auth(token))
            await asyncio.wait_for(client.closed.wait(), timeout=10)
            ended = await http.post(
                f"/{sid}/rtc/offer",
                json={"sdp": await aiortc_offer(audio=True, data_channel=True), "type": "offer"},
                headers=auth(token),
            )
            assert ended.status_code == 409
    finally:
        await client.close()


async def test_at_capacity_is_503_and_text_mode_still_works(voice_server: AppServer):
    sessions = [await start_session(voice_server.api) for _ in range(3)]
    clients = []
    try:
        for sid, token in sessions[:2]:  # the server allows 2 voice interviews
            clients.append(await VoiceClient.connect(voice_server.api, sid, token))
        sid, token = sessions[2]
        sdp = await aiortc_offer(audio=True, data_channel=True)
        refused = await offer(voice_server, sid, token, {"sdp": sdp, "type": "offer"})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "10"
        assert refused.json()["error"]["code"] == "at_capacity"
        async with httpx.AsyncClient(base_url=voice_server.api, timeout=30) as http:
            typed = await http.post(
                f"/{sid}/transcript",
                json={"text": "I would rather type: I shipped a search feature last quarter."},
                headers=auth(token),
            )
            assert typed.status_code == 200
            health = (await http.get("/health")).json()
            assert "2 live connections" in health["checks"]["voice"]["detail"]
    finally:
        for client in clients:
            await client.close()


async def test_the_interviewer_closes_and_hangs_up_when_the_plan_is_done(
    voice_server: AppServer, transcribe: Transcribe
):
    sid, token = await start_session(voice_server.api, plan_id="quick-support")  # one question
    client = await VoiceClient.connect(voice_server.api, sid, token)
    try:
        await client.wait_for_reply(timeout=40)
        said = await client.say(
            speech("I let the customer explain everything and then I summarize what I heard")
        )
        closing = await client.wait_for_reply(after=said.speech_ended_at, timeout=40)
        heard = transcribe(closing.sample_rate, closing.audio)
        assert recall("Thanks for your time. Goodbye.", heard) >= 0.6, heard
        # After its closing line the server ends the connection itself.
        await asyncio.wait_for(client.closed.wait(), timeout=15)
    finally:
        await client.close()
    ended = await status(voice_server, sid, token)
    assert (ended["status"], ended["end_reason"]) == ("ended", "plan_finished")
    assert ended["connection_state"] == "closed"
