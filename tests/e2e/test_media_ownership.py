"""Media pinned, everything else anywhere: two real voice servers on one real PostgreSQL, a real
aiortc peer connected to one of them (its owner), and the session's signaling sent to the other.

The other instance relays ICE candidates and answer requests to the owner, refuses a second offer
while the owner's call is live (409, as one instance does), takes the session over once the
owner's audio has stopped or the owner is dead, and answers 503 with Retry-After (never a 500)
when the owner is hung.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from harness.app_server import AppServer
from harness.postgres import PostgresServer
from harness.speech_audio import speech
from harness.voice_client import OfferRejected, VoiceClient, start_session
from interview.api.voice import OWNER_RETRY_AFTER_SECONDS
from interview.voice.gateway import MEDIA_STALE_SECONDS
from interview.voice.ownership import RELAY_TIMEOUT_SECONDS
from tests.api.helpers import auth
from tests.e2e.conftest import recall, start_voice_server
from tests.e2e.test_voice import Transcribe, aiortc_offer

DEAD_AFTER_SECONDS = 10.0  # INSTANCE_DEAD_AFTER_SECONDS's default
# A trickled candidate as a browser sends it (fastrtc wants its 10+ fields), on loopback.
LOOPBACK_CANDIDATE = (
    "candidate:1 1 udp 2122260223 127.0.0.1 9 typ host generation 0 ufrag x network-id 1"
)


@dataclass
class Pair:
    """Instances "a" and "b" on one database; "a" is restarted when a test killed it."""

    directory: Path
    database_url: str
    a: AppServer
    b: AppServer

    def ensure_a(self) -> AppServer:
        if self.a.process is None or self.a.process.poll() is not None:
            self.a = start(self.directory / "a-again", self.database_url, "a")
        return self.a

    def owner(self, session_id: str) -> str | None:
        with psycopg.connect(self.database_url) as conn:
            row = conn.execute(
                "SELECT owner_instance FROM interview_sessions WHERE id = %s", (session_id,)
            ).fetchone()
        assert row is not None
        return row[0]


def start(directory: Path, database_url: str, name: str) -> AppServer:
    directory.mkdir(parents=True, exist_ok=True)
    return start_voice_server(
        directory, DATABASE_URL=database_url, INSTANCE_ID=name, MAX_CONCURRENT_INTERVIEWS="2"
    )


@pytest.fixture(scope="module")
def pair(tmp_path_factory, postgres_server: PostgresServer) -> Iterator[Pair]:
    directory = tmp_path_factory.mktemp("ownership")
    url = postgres_server.create_database()
    a = start(directory / "a", url, "a")
    try:
        b = start(directory / "b", url, "b")
    except BaseException:
        a.stop()
        raise
    pair = Pair(directory, url, a, b)
    yield pair
    for server in (pair.a, pair.b):
        if server.process is not None and server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGCONT)  # a test that failed while it was hung
        server.stop()


async def post(server: AppServer, path: str, token: str, body: dict | None = None):
    async with httpx.AsyncClient(base_url=server.api, timeout=30, trust_env=False) as http:
        return await http.post(path, json=body, headers=auth(token))


async def turns(server: AppServer, sid: str, token: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=server.api, timeout=10, trust_env=False) as http:
        response = await http.get(f"/{sid}/transcript", headers=auth(token))
        assert response.status_code == 200, response.text
        return [t for t in response.json()["turns"] if t["interruption"] != "withdrawn"]


async def until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def test_signaling_on_the_other_instance_reaches_the_owner(
    pair: Pair, transcribe: Transcribe
):
    a, b = pair.ensure_a(), pair.b
    sid, token = await start_session(b.api, plan_id="quick-engineer")
    client = await VoiceClient.connect(a.api, sid, token)
    second: VoiceClient | None = None
    try:
        await client.wait_for_reply(timeout=60)  # the greeting, from a
        assert pair.owner(sid) == "a"

        # The answer to the connection's offer, asked of b: a's own SDP, relayed.
        answer = await post(b, f"/{sid}/rtc/answer", token)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"sdp": client.pc.remoteDescription.sdp, "type": "answer"}

        # ICE candidates sent to b are a's to add: b has no connection of its own (a session
        # connected nowhere gets 404 there), so these answers are a's fastrtc's.
        other_sid, other_token = await start_session(b.api)
        candidate = {"candidate": LOOPBACK_CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0}
        nowhere = await post(b, f"/{other_sid}/rtc/ice-candidate", other_token, candidate)
        assert nowhere.status_code == 404 and nowhere.json()["error"]["code"] == "no_connection"
        added = await post(b, f"/{sid}/rtc/ice-candidate", token, candidate)
        assert added.status_code == 200 and added.json() == {"status": "added"}
        garbage = {"candidate": "candidate:garbage", "sdpMid": "0", "sdpMLineIndex": 0}
        refused = await post(b, f"/{sid}/rtc/ice-candidate", token, garbage)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "invalid_candidate"
        end = {"candidate": "", "sdpMid": "0", "sdpMLineIndex": 0}
        assert (await post(b, f"/{sid}/rtc/ice-candidate", token, end)).status_code == 200
        assert "relay_carried_out" in a.log() and "relay_answered" in b.log()

        # A second offer on b while a's call is live: 409, as on one instance; a's call goes on.
        sdp = await aiortc_offer(audio=True, data_channel=True)
        again = await post(b, f"/{sid}/rtc/offer", token, {"sdp": sdp, "type": "offer"})
        assert again.status_code == 409, again.text
        assert again.json()["error"]["code"] == "already_connected"
        assert pair.owner(sid) == "a" and not client.closed.is_set()

        # A typed answer on b while the call is on a: committed as on one instance, where the
        # call does not speak the typed reply either; a's call goes on.
        typed = await post(
            b, f"/{sid}/transcript", token, {"text": "I would type that I built a search index."}
        )
        assert typed.status_code == 200, typed.text
        after_typing = await turns(b, sid, token)
        assert [(t["index"], t["role"], t["source"]) for t in after_typing[:2]] == [
            (0, "interviewer", "voice"),
            (1, "candidate", "text"),
        ]
        assert len(after_typing) == 3 and not client.closed.is_set()

        # The page on a is gone (its audio stopped): an offer on b takes the session over.
        client.microphone.stall()
        await asyncio.sleep(MEDIA_STALE_SECONDS + 1.0)
        second = await VoiceClient.connect(b.api, sid, token)
        resumed = await second.wait_for_reply(timeout=60)
        heard = transcribe(resumed.sample_rate, resumed.audio)
        assert recall(after_typing[-1]["text"], heard) >= 0.6, heard  # where it was
        await asyncio.wait_for(client.closed.wait(), timeout=15)  # a hung its call up
        assert pair.owner(sid) == "b"
        assert "voice_connection_taken_over" in a.log()
        # Nothing lost or doubled (the typed reply, heard now for the first time, is marked
        # spoken with when it played).
        assert [(t["index"], t["text"]) for t in await turns(b, sid, token)] == [
            (t["index"], t["text"]) for t in after_typing
        ]

        # b's call ends: b no longer owns the session, and the next offer anywhere is free.
        await second.close()
        await until(lambda: pair.owner(sid) is None, 10, "b kept the session after its call")
    finally:
        await client.close()
        if second is not None:
            await second.close()


async def test_a_hung_owner_is_a_503_with_retry_after(pair: Pair):
    a, b = pair.ensure_a(), pair.b
    assert a.process is not None
    sid, token = await start_session(a.api, plan_id="quick-engineer")
    client = await VoiceClient.connect(a.api, sid, token)
    try:
        await client.wait_for_reply(timeout=60)
        candidate = {"candidate": LOOPBACK_CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0}
        os.kill(a.process.pid, signal.SIGSTOP)  # a hangs: alive by its heartbeat, answers nothing
        try:
            started = time.monotonic()
            stuck_candidate, stuck_answer = await asyncio.gather(
                post(b, f"/{sid}/rtc/ice-candidate", token, candidate),
                post(b, f"/{sid}/rtc/answer", token),
            )
            waited = time.monotonic() - started
        finally:
            os.kill(a.process.pid, signal.SIGCONT)
        for response in (stuck_candidate, stuck_answer):
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "owner_unreachable"
            assert int(response.headers["retry-after"]) > 0
        assert RELAY_TIMEOUT_SECONDS - 0.5 < waited < RELAY_TIMEOUT_SECONDS + 5, waited
        # a is back: the retry the 503 asked for works.
        retried = await post(b, f"/{sid}/rtc/ice-candidate", token, candidate)
        assert retried.status_code == 200, retried.text
        assert "Traceback" not in b.log()
    finally:
        await client.close()


async def test_a_dead_owners_session_is_taken_by_an_offer_anywhere(
    pair: Pair, transcribe: Transcribe
):
    a, b = pair.ensure_a(), pair.b
    sid, token = await start_session(a.api, plan_id="quick-engineer")
    client = await VoiceClient.connect(a.api, sid, token)
    second: VoiceClient | None = None
    try:
        await client.wait_for_reply(timeout=60)
        said = await client.say(speech("I built a billing service in Python for our shop"))
        await client.wait_for_reply(after=said.speech_ended_at, timeout=60)
        before = await turns(b, sid, token)
        assert len(before) == 3 and pair.owner(sid) == "a"

        a.kill()  # SIGKILL: its row and its ownership stay behind
        killed = time.monotonic()
        # The client reconnects through b as a browser would: a 503 (a may only be slow yet)
        # says when to retry, until a's missed heartbeats show it is dead.
        refusals: list[int] = []
        while second is None:
            try:
                second = await VoiceClient.connect(b.api, sid, token)
            except OfferRejected as exc:
                assert exc.status_code == 503 and exc.code == "owner_unreachable", exc
                refusals.append(exc.status_code)
                assert time.monotonic() - killed < DEAD_AFTER_SECONDS + 3 * RELAY_TIMEOUT_SECONDS
                await asyncio.sleep(OWNER_RETRY_AFTER_SECONDS)  # its Retry-After
        assert refusals, "a was taken for dead before its heartbeat went stale"
        assert pair.owner(sid) == "b"

        # The interview goes on from the last committed turn.
        again = await second.wait_for_reply(timeout=60)
        heard = transcribe(again.sample_rate, again.audio)
        assert recall(before[-1]["text"], heard) >= 0.6, heard
        said = await second.say(speech("I read the logs first and then I reproduce the failure"))
        await second.wait_for_reply(after=said.speech_ended_at, timeout=60)
        after = await turns(b, sid, token)
        assert after[:3] == before
        assert [(t["index"], t["role"]) for t in after[3:5]] == [
            (3, "candidate"),
            (4, "interviewer"),
        ]
        assert "voice_owner_dead" in b.log()
    finally:
        await client.close()
        if second is not None:
            await second.close()
