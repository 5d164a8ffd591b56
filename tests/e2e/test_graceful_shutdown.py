"""SIGTERM, as ECS stops a task: live interviews finish or are closed with every turn saved, new
ones are refused while the server drains, and the process exits within SHUTDOWN_GRACE_SECONDS.

Real servers (`python app.py`) and, for voice, real aiortc peers speaking espeak-ng audio.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest

from harness.app_server import AppServer
from harness.speech_audio import speech
from harness.voice_client import OfferRejected, VoiceClient, start_session
from tests.api.helpers import auth
from tests.e2e.conftest import recall, voice_env

ANSWER = "I split the billing code out of the monolith into a service with its own database."
SPOKEN_ANSWER = "I read the logs and the metrics first and then I reproduce the failure locally"
GRACE = 30
# Voice: the drain keeps live interviews for GRACE_VOICE - 10 s. Generous, because two cores
# shared with other work may take seconds per transcription and per synthesized line.
GRACE_VOICE = 60


def wait_exit(server: AppServer, timeout: float) -> tuple[int, float]:
    assert server.process is not None
    started = time.monotonic()
    code = server.process.wait(timeout=timeout)
    return code, time.monotonic() - started


def test_sigterm_keeps_a_text_interview_resumable(database_url: str, tmp_path: Path):
    env = {"DATABASE_URL": database_url, "SHUTDOWN_GRACE_SECONDS": str(GRACE)}
    first = AppServer(tmp_path / "first.log", env)
    first.start()
    try:
        with httpx.Client(base_url=first.api, timeout=10) as api:
            session = api.post("/start", json={"user_id": "sigterm-text"}).json()
            sid, headers = session["session_id"], auth(session["token"])
            for i in range(2):
                reply = api.post(
                    f"/{sid}/transcript", json={"text": f"{ANSWER} {i}"}, headers=headers
                )
                assert reply.status_code == 200
            before = api.get(f"/{sid}/transcript", headers=headers).json()["turns"]
        assert first.process is not None
        first.process.send_signal(signal.SIGTERM)
        code, seconds = wait_exit(first, GRACE + 5)
    finally:
        first.kill()
    # Nothing live to wait for: it leaves at once, through the lifespan shutdown.
    assert code in (0, -signal.SIGTERM) and seconds < 10
    log = first.log()
    assert '"drained"' in log and "Application shutdown complete" in log

    second = AppServer(tmp_path / "second.log", env)
    second.start()
    try:
        with httpx.Client(base_url=second.api, timeout=10) as api:
            assert api.get(f"/{sid}/transcript", headers=headers).json()["turns"] == before
            assert api.get(f"/{sid}/status", headers=headers).json()["status"] == "active"
            reply = api.post(f"/{sid}/transcript", json={"text": ANSWER}, headers=headers)
            assert reply.status_code == 200  # the interview goes on where it was
            assert reply.json()["candidate_turn"]["index"] == len(before)
    finally:
        second.stop()


async def get(server: AppServer, path: str, token: str | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.api, timeout=10) as client:
        return await client.get(path, headers=auth(token) if token else None)


async def wait_line_played(server: AppServer, client: VoiceClient, sid: str, token: str) -> None:
    """Until the interviewer's latest line has been spoken and heard to its end."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        turns = (await get(server, f"/{sid}/transcript", token)).json()["turns"]
        # A line is marked "voice" once all of its audio has been handed to the connection.
        if turns and turns[-1]["role"] == "interviewer" and turns[-1]["source"] == "voice":
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError(f"the interviewer's line was never spoken: {turns}")
    await client.wait_for_silence(1.5, 30)


async def test_sigterm_during_live_voice_interviews(tmp_path: Path):
    """Two live voice interviews at SIGTERM: A is mid-answer to its last question and finishes
    during the drain; B stays silent and is closed when the drain ends, resumable elsewhere."""
    env = voice_env(
        tmp_path, SHUTDOWN_GRACE_SECONDS=str(GRACE_VOICE), MAX_CONCURRENT_INTERVIEWS="3"
    )
    server = AppServer(tmp_path / "voice.log", env)
    server.start(timeout=120)
    a_sid, a_token = await start_session(server.api, plan_id="quick-engineer")
    b_sid, b_token = await start_session(server.api, plan_id="quick-support")
    a = await VoiceClient.connect(server.api, a_sid, a_token)
    b = await VoiceClient.connect(server.api, b_sid, b_token)
    try:
        await asyncio.gather(
            wait_line_played(server, a, a_sid, a_token),
            wait_line_played(server, b, b_sid, b_token),
        )
        # A's first question answered in text, so its next spoken answer is its last one.
        async with httpx.AsyncClient(base_url=server.api, timeout=20) as http:
            moved = await http.post(
                f"/{a_sid}/transcript", json={"text": ANSWER}, headers=auth(a_token)
            )
            assert moved.status_code == 200
            assert moved.json()["interviewer_turn"]["kind"] == "question"

        # SIGTERM while A is speaking its answer.
        answer = await a.say(speech(SPOKEN_ANSWER), wait=False)
        await asyncio.sleep(1.5)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()

        # Draining: health 503, new interviews and new voice connections refused with
        # Retry-After; the live interview goes on.
        await asyncio.sleep(0.5)
        health = await get(server, "/health")
        assert health.status_code == 503
        assert health.json()["checks"]["accepting"] == {"ok": False, "detail": "draining"}
        async with httpx.AsyncClient(base_url=server.api, timeout=10) as http:
            refused = await http.post("/start", json={"user_id": "too-late"})
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "draining"
        assert int(refused.headers["retry-after"]) > 0
        with pytest.raises(OfferRejected) as rejected:
            await VoiceClient.connect(server.api, a_sid, a_token)
        assert rejected.value.status_code == 503

        # A's answer is heard, committed, answered with the closing line, and A is hung up.
        await answer.wait_speech_sent(timeout=20)
        await asyncio.wait_for(a.closed.wait(), timeout=GRACE_VOICE - 10)
        a_turns = (await get(server, f"/{a_sid}/transcript", a_token)).json()["turns"]
        # B is still connected: the drain waits for it until its window ends.
        assert b.connection_state == "connected", b.close_reason
        await asyncio.wait_for(b.closed.wait(), timeout=GRACE_VOICE)

        code, _ = await asyncio.to_thread(wait_exit, server, GRACE_VOICE)
        elapsed = time.monotonic() - stopped_at
    finally:
        await a.close()
        await b.close()
        server.kill()
    log = server.log()
    assert code in (0, -signal.SIGTERM), log[-3000:]
    assert elapsed < GRACE_VOICE + 2, elapsed  # within the stop timeout
    assert '"closed_at_deadline": 1' in log  # B, not A, was closed by the drain

    assert [t["role"] for t in a_turns][-2:] == ["candidate", "interviewer"]
    assert a_turns[-2]["source"] == "voice"
    assert recall(SPOKEN_ANSWER, a_turns[-2]["text"]) >= 0.7, a_turns[-2]["text"]
    assert a_turns[-1]["kind"] == "close"

    # On the same database after the restart: nothing lost, A ended with its reason, B open.
    text_env = {**env, "VOICE_ENABLED": "false"}
    again = AppServer(tmp_path / "again.log", text_env)
    again.start()
    try:
        a_status = (await get(again, f"/{a_sid}/status", a_token)).json()
        assert (a_status["status"], a_status["end_reason"]) == ("ended", "plan_finished")
        assert (await get(again, f"/{a_sid}/transcript", a_token)).json()["turns"] == a_turns
        b_status = (await get(again, f"/{b_sid}/status", b_token)).json()
        assert (b_status["status"], b_status["connection_state"]) == ("active", "disconnected")
        b_turns = (await get(again, f"/{b_sid}/transcript", b_token)).json()["turns"]
        assert [t["role"] for t in b_turns] == ["interviewer"]
        async with httpx.AsyncClient(base_url=again.api, timeout=10) as http:
            resumed = await http.post(
                f"/{b_sid}/transcript", json={"text": ANSWER}, headers=auth(b_token)
            )
        assert resumed.status_code == 200
        results = await get(again, f"/{a_sid}/results", a_token)
        assert results.status_code in (200, 202)
    finally:
        again.stop()
