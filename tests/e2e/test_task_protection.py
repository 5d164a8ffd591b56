"""ECS task scale-in protection end to end: a real server (`python app.py`) whose ECS_AGENT_URI
points at a local HTTP server answering as the ECS agent (harness/fake_ecs_agent.py), and a real
aiortc voice call. The task is protected while the call is live, released when it ends, and an
agent that fails is retried while the call goes on as if nothing happened."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from harness.fake_ecs_agent import FakeEcsAgent
from harness.speech_audio import speech
from harness.voice_client import VoiceClient, start_session
from tests.e2e.conftest import start_voice_server

ANSWER = "I moved our billing code into its own service and wrote the tests first"
PROTECT = {"ProtectionEnabled": True, "ExpiresInMinutes": 10}
RELEASE = {"ProtectionEnabled": False}


async def until(agent: FakeEcsAgent, check: Callable[[FakeEcsAgent], bool], within: float) -> bool:
    return await asyncio.to_thread(agent.wait_for, check, within)


def logged(log: str, event: str) -> list[dict[str, object]]:
    lines = (json.loads(line) for line in log.splitlines() if line.startswith("{"))
    return [line for line in lines if line.get("event") == event]


async def test_a_live_call_protects_the_task_until_it_ends(tmp_path: Path):
    with FakeEcsAgent() as agent:
        server = start_voice_server(tmp_path, ECS_AGENT_URI=agent.uri)
        try:
            # At start the service looked at the protection and, with no call, asked nothing.
            assert [call.method for call in agent.calls()] == ["GET"]

            # The agent fails the first three times (an ECS error, a refusal, no JSON at all).
            agent.fail_next(1, "error")
            agent.fail_next(1, "failure")
            agent.fail_next(1, "garbage")
            sid, token = await start_session(server.api, plan_id="quick-engineer")
            client = await VoiceClient.connect(server.api, sid, token)
            try:
                # The call goes on regardless: the interviewer greets, hears an answer, replies.
                greeting = await client.wait_for_reply(timeout=40)
                assert greeting.duration > 1
                said = await client.say(speech(ANSWER))
                reply = await client.wait_for_reply(after=said.speech_ended_at, timeout=40)
                assert reply.duration > 1
                # Meanwhile the protection was retried with backoff until the agent set it.
                assert await until(agent, lambda a: a.protected, within=20)
                assert [call.body for call in agent.puts()] == [PROTECT] * 4
                assert [call.status for call in agent.puts()] == [500, 200, 502, 200]
                assert client.connection_state == "connected"

                agent.fail_next(2, "error")  # the release fails twice too
            finally:
                await client.close()
            # The last (only) call ended: released, after the retries.
            assert await until(agent, lambda a: not a.protected, within=20)
            assert [call.body for call in agent.puts()][4:] == [RELEASE] * 3
        finally:
            server.stop()
    log = server.log()
    assert len(logged(log, "task_protection_failed")) == 5
    assert logged(log, "task_protected")[0]["minutes"] == 10
    assert len(logged(log, "task_protection_released")) == 1
    assert logged(log, "task_protection_ready")[0]["protected"] is False
