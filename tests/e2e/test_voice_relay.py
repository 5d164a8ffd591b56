"""The production media path: both peers forced through a real coturn relay on loopback, with
the credentials the service issues (in AWS the tasks sit in private subnets)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from harness.app_server import AppServer
from harness.coturn import CoturnServer
from harness.speech_audio import speech
from harness.voice_client import VoiceClient, VoiceClientError, start_session
from tests.api.helpers import auth
from tests.e2e.conftest import COTURN_SECRET, start_voice_server

SECRET = COTURN_SECRET


def relay_server(directory: Path, coturn: CoturnServer, secret: str) -> AppServer:
    return start_voice_server(
        directory,
        TURN_SERVER=f"127.0.0.1:{coturn.port}",
        TURN_SECRET=secret,
        RTC_ICE_TRANSPORT_POLICY="relay",
    )


async def test_a_spoken_turn_through_the_relay(coturn: CoturnServer, tmp_path: Path):
    server = relay_server(tmp_path, coturn, SECRET)
    try:
        sid, token = await start_session(server.api, plan_id="quick-engineer")
        client = await VoiceClient.connect(server.api, sid, token, relay_only=True)
        try:
            await client.wait_for_reply(timeout=40)
            said = await client.say(
                speech("I built a small search engine for our documentation site")
            )
            await client.wait_for_reply(after=said.speech_ended_at, timeout=40)
        finally:
            await client.close()
        async with httpx.AsyncClient(base_url=server.api, timeout=10) as http:
            turns = (await http.get(f"/{sid}/transcript", headers=auth(token))).json()["turns"]
        assert [t["role"] for t in turns] == ["interviewer", "candidate", "interviewer"]
        # Both peers allocated relays with this session's credentials (username ends in its id).
        assert coturn.log().count(f":{sid}") >= 2, coturn.log()[-2000:]
    finally:
        server.stop()


async def test_a_wrong_secret_fails_cleanly(coturn: CoturnServer, tmp_path: Path):
    server = relay_server(tmp_path, coturn, "not-the-relay-secret")
    try:
        sid, token = await start_session(server.api, plan_id="quick-engineer")
        with pytest.raises(VoiceClientError):
            await VoiceClient.connect(server.api, sid, token, relay_only=True, connect_timeout=15)
        async with httpx.AsyncClient(base_url=server.api, timeout=10) as http:
            # The service is unharmed and the session goes on in text mode.
            health = (await http.get("/health")).json()
            assert health["status"] == "ok"
            assert "0 live connections" in health["checks"]["voice"]["detail"]
            typed = await http.post(
                f"/{sid}/transcript",
                json={"text": "Typing instead: I led the move of our jobs to a queue system."},
                headers=auth(token),
            )
            assert typed.status_code == 200
    finally:
        server.stop()
