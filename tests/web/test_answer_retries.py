"""The web client's typed answers over real HTTP: the compiled client (ui/web/src/client.ts, run
by Node.js) against a real server, through a proxy that drops a response the server has sent or
answers 503 itself. What the proxy sees is what went over the wire: one Idempotency-Key per
answer, the same on every retry of it, and the server stores each answer once.

The server's half (a repeated key returns the stored outcome) is issue 12's `Idempotency-Key`
contract: the dropped-response test needs it.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.app_server import AppServer
from tests.api.helpers import auth
from tests.web.answer_proxy import AnswerProxy, answer_proxy

WEB = Path(__file__).resolve().parents[2] / "ui" / "web"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
FIRST = "I rebuilt our billing service in Python and cut failed charges by half."
SECOND = "I profile first, then read the logs around the slowest requests."


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ui/web/test/answer_driver.ts bundled for Node.js (the client as the page ships it)."""
    esbuild = WEB / "node_modules" / ".bin" / "esbuild"
    assert esbuild.exists(), "run `make web` to install ui/web"
    out = tmp_path_factory.mktemp("answer-driver") / "answer_driver.mjs"
    built = subprocess.run(
        [
            str(esbuild),
            "test/answer_driver.ts",
            "--bundle",
            "--platform=node",
            "--format=esm",
            "--target=node20",
            "--log-level=warning",
            f"--outfile={out}",
        ],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert built.returncode == 0, built.stderr
    return out


async def run_client(driver: Path, proxy: AnswerProxy, *answers: str) -> list[dict[str, Any]]:
    """Start a session through the proxy and send `answers`; the driver's JSON lines."""
    node = shutil.which("node")
    assert node is not None, "Node.js is needed for the web client (see the README)"
    process = await asyncio.create_subprocess_exec(
        node,
        str(driver),
        f"{proxy.base_url}/api/interview",
        *answers,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    lines = [json.loads(line) for line in stdout.decode().splitlines() if line.strip()]
    assert process.returncode == 0, (lines, stderr.decode()[-3000:])
    return lines


def transcript(server: AppServer, lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The session's turns as the server stored them: (role, text)."""
    started = next(line["started"] for line in lines if "started" in line)
    response = httpx.get(
        f"{server.api}/{started['session_id']}/transcript",
        headers=auth(started["token"]),
        timeout=10,
    )
    response.raise_for_status()
    return [(turn["role"], turn["text"]) for turn in response.json()["turns"]]


async def test_two_answers_carry_two_keys(api_server: AppServer, driver: Path) -> None:
    async with answer_proxy(api_server.base_url) as proxy:
        lines = await run_client(driver, proxy, FIRST, SECOND)
    keys = [seen.idempotency_key for seen in proxy.answers()]
    assert len(keys) == 2
    assert all(key is not None and UUID.match(key) for key in keys), keys
    assert keys[0] != keys[1]
    assert [line for line in lines if "retrying" in line] == []
    roles = [role for role, _ in transcript(api_server, lines)]
    assert roles == ["interviewer", "candidate", "interviewer", "candidate", "interviewer"]


async def test_a_busy_server_is_retried_after_its_retry_after_with_the_same_key(
    api_server: AppServer, driver: Path
) -> None:
    async with answer_proxy(api_server.base_url) as proxy:
        proxy.plan = ["busy", "forward"]  # the first try never reaches the server
        lines = await run_client(driver, proxy, FIRST)
    first, retry = proxy.answers()
    assert first.idempotency_key is not None and UUID.match(first.idempotency_key)
    assert retry.idempotency_key == first.idempotency_key
    assert retry.at - first.at >= 0.9, "the retry did not wait for Retry-After: 1"
    assert [line["retrying"] for line in lines if "retrying" in line] == [
        {"attempt": 2, "delay_ms": 1000, "saved": False}
    ]
    turns = transcript(api_server, lines)
    assert [text for role, text in turns if role == "candidate"] == [FIRST]


async def test_a_response_lost_after_the_answer_was_stored_is_retried_and_stored_once(
    api_server: AppServer, driver: Path
) -> None:
    async with answer_proxy(api_server.base_url) as proxy:
        # The server stores the first answer and replies; the client never gets the reply.
        proxy.plan = ["drop", "forward", "forward"]
        lines = await run_client(driver, proxy, FIRST, SECOND)
    sent = proxy.answers()
    assert [s.action for s in sent] == ["drop", "forward", "forward"]
    keys = [s.idempotency_key for s in sent]
    assert keys[0] is not None and UUID.match(keys[0])
    assert keys[1] == keys[0], "the retry of the first answer changed its key"
    assert keys[2] != keys[0], "the second answer reused the first one's key"
    assert [line["retrying"]["saved"] for line in lines if "retrying" in line] == [False]

    # The server answered the retry with the outcome it had stored: one answer per question.
    answered = [line["answered"] for line in lines if "answered" in line]
    assert [a["candidate_turn"]["text"] for a in answered] == [FIRST, SECOND]
    assert [a["candidate_turn"]["index"] for a in answered] == [1, 3]
    turns = transcript(api_server, lines)
    assert turns == [
        ("interviewer", turns[0][1]),
        ("candidate", FIRST),
        ("interviewer", answered[0]["interviewer_turn"]["text"]),
        ("candidate", SECOND),
        ("interviewer", answered[1]["interviewer_turn"]["text"]),
    ]
