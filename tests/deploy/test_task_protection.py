"""ECS task scale-in protection against a local HTTP server that answers as the ECS agent does
(harness/fake_ecs_agent.py): set while interviews are live, renewed, released, and retried with
backoff when the agent fails, without ever stalling the service."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import structlog

from harness.fake_ecs_agent import TASK_ARN, FakeEcsAgent
from interview.config import Settings
from interview.deploy.task_protection import (
    AgentClient,
    AgentFailed,
    TaskProtection,
    task_protection,
)

MINUTES = 7
CHECK = 0.05
RETRY_MAX = 0.4
PROTECT = {"ProtectionEnabled": True, "ExpiresInMinutes": MINUTES}
RELEASE = {"ProtectionEnabled": False}


class Live:
    """The live voice interview count, as the gateway reports it."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> int:
        return self.count


@pytest.fixture
def agent() -> Iterator[FakeEcsAgent]:
    with FakeEcsAgent() as fake:
        yield fake


@pytest.fixture
async def live() -> Live:
    return Live()


def protection_for(
    agent: FakeEcsAgent, live: Live, *, timeout: float = 5.0, renew_every: float | None = None
) -> TaskProtection:
    return TaskProtection(
        AgentClient(agent.uri, timeout=timeout),
        live,
        MINUTES,
        check_seconds=CHECK,
        retry_max_seconds=RETRY_MAX,
        renew_every=renew_every,
    )


@pytest.fixture
async def protection(agent: FakeEcsAgent, live: Live) -> AsyncIterator[TaskProtection]:
    async with protection_for(agent, live).running() as running:
        yield running


async def until(check: Callable[[], object], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.02)


def bodies(agent: FakeEcsAgent) -> list[object]:
    return [call.body for call in agent.puts()]


async def test_the_client_speaks_the_agents_protocol(agent: FakeEcsAgent):
    client = AgentClient(agent.uri)
    try:
        assert (await client.get()).enabled is False
        protected = await client.put(True, 15)
        assert protected.enabled and protected.task_arn == TASK_ARN
        assert protected.expires_at is not None
        remaining = protected.expires_at.timestamp() - time.time()
        assert 14 * 60 < remaining <= 15 * 60
        assert agent.protected
        released = await client.put(False)
        assert (released.enabled, released.expires_at) == (False, None)
        assert not agent.protected
        # The agent refuses unknown fields and missing ones: ours are exactly its own.
        assert [call.status for call in agent.calls()] == [200, 200, 200]
        assert bodies(agent) == [{"ProtectionEnabled": True, "ExpiresInMinutes": 15}, RELEASE]
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ("error", "HTTP 500, error ServerException: the ECS API failed"),
        ("failure", "HTTP 200, failure TASK_NOT_VALID"),
        ("garbage", "HTTP 502, not an agent answer"),
        ("slow", "ReadTimeout"),
    ],
)
async def test_each_way_the_agent_fails_is_an_agent_failure(
    agent: FakeEcsAgent, fault: str, said: str
):
    agent.fail_next(1, fault, delay=1.5)  # type: ignore[arg-type]
    client = AgentClient(agent.uri, timeout=0.5 if fault == "slow" else 5.0)
    try:
        with pytest.raises(AgentFailed) as failed:
            await client.put(True, 5)
        assert said in str(failed.value)
    finally:
        await client.aclose()


async def test_a_refused_connection_is_an_agent_failure(agent: FakeEcsAgent):
    agent.stop()
    client = AgentClient(agent.uri)
    try:
        with pytest.raises(AgentFailed, match="ConnectError"):
            await client.get()
    finally:
        await client.aclose()


async def test_protected_while_live_and_released_when_the_last_call_ends(
    agent: FakeEcsAgent, live: Live, protection: TaskProtection
):
    await until(lambda: agent.calls("GET"))  # it looks at start
    await asyncio.sleep(5 * CHECK)
    assert bodies(agent) == []  # nothing live: nothing to ask

    live.count = 1
    await until(lambda: protection.protected)
    assert agent.protected
    live.count = 2
    await asyncio.sleep(5 * CHECK)
    assert bodies(agent) == [PROTECT]  # a second call changes nothing

    live.count = 1
    await asyncio.sleep(5 * CHECK)
    assert agent.protected
    live.count = 0
    await until(lambda: not agent.protected)
    assert not protection.protected
    assert bodies(agent) == [PROTECT, RELEASE]


async def test_protection_is_renewed_before_it_expires(agent: FakeEcsAgent, live: Live):
    async with protection_for(agent, live, renew_every=0.3).running():
        live.count = 1
        await until(lambda: len(agent.puts()) >= 4)
        live.count = 0
        await until(lambda: not agent.protected)
    puts = agent.puts()
    renewals = [call for call in puts if call.body == PROTECT]
    assert len(renewals) >= 4 and puts[-1].body == RELEASE
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(renewals)]
    assert all(0.25 <= gap < 1.0 for gap in gaps), gaps


@pytest.mark.parametrize("fault", ["error", "failure", "garbage", "slow"])
async def test_a_failing_agent_is_retried_with_backoff(agent: FakeEcsAgent, live: Live, fault):
    agent.fail_next(3, fault, delay=1.0)
    timeout = 0.5 if fault == "slow" else 5.0
    with structlog.testing.capture_logs() as logs:
        async with protection_for(agent, live, timeout=timeout).running() as protection:
            await until(lambda: agent.calls("GET"))
            live.count = 1
            # As confirmed by the agent's answer ("slow" sets it, but answers too late).
            await until(lambda: protection.protected, within=10)
            attempts = agent.puts()
            assert agent.protected
    # The GET at start took the first fault; then two failed PUTs and the third is the one.
    assert [call.body for call in attempts] == [PROTECT] * 3
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    # Exponential backoff from 1 s, capped at RETRY_MAX here (plus the time the attempt took).
    assert all(gap >= RETRY_MAX for gap in gaps), gaps
    failures = [entry for entry in logs if entry["event"] == "task_protection_failed"]
    assert [entry["attempt"] for entry in failures] == [1, 2]
    assert all(entry["wanted"] is True and entry["log_level"] == "warning" for entry in failures)


async def test_the_agent_unreachable_is_retried_until_it_is_back(agent: FakeEcsAgent, live: Live):
    agent.stop()
    with structlog.testing.capture_logs() as logs:
        async with protection_for(agent, live).running() as protection:
            live.count = 1
            await until(
                lambda: sum(e["event"] == "task_protection_failed" for e in logs) >= 3, within=10
            )
            assert not protection.protected
            agent.start()
            await until(lambda: protection.protected, within=5)
            assert agent.protected
    assert any(e["event"] == "task_protection_unavailable" for e in logs)  # the GET at start
    first_failure = next(e for e in logs if e["event"] == "task_protection_failed")
    assert "ConnectError" in first_failure["error"]


async def test_a_failing_release_is_retried(agent: FakeEcsAgent, live: Live):
    async with protection_for(agent, live).running() as protection:
        live.count = 1
        await until(lambda: protection.protected)
        agent.fail_next(2, "error")
        live.count = 0
        await until(lambda: not agent.protected, within=10)
    assert bodies(agent) == [PROTECT, RELEASE, RELEASE, RELEASE]


async def test_retries_stop_once_the_call_they_were_for_has_ended(agent: FakeEcsAgent, live: Live):
    agent.fail_next(100, "error")
    async with protection_for(agent, live).running():
        live.count = 1
        await until(lambda: len(agent.puts()) >= 2)
        live.count = 0  # never protected, nothing to release: the retries end
        await asyncio.sleep(2 * RETRY_MAX)
        tried = len(agent.puts())
        await asyncio.sleep(2 * RETRY_MAX)
        assert len(agent.puts()) == tried
    assert not agent.protected


async def test_the_service_is_never_held_up_by_a_slow_agent(agent: FakeEcsAgent, live: Live):
    """What the calls run on (the event loop) keeps its pace while the agent hangs."""
    agent.fail_next(3, "slow", delay=1.5)
    async with protection_for(agent, live, timeout=0.5).running():
        live.count = 1
        ticks: list[float] = []
        while not agent.protected:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)
            assert len(ticks) < 1000, "never protected"
    gaps = [later - earlier for earlier, later in itertools.pairwise(ticks)]
    # A loop blocked by the agent would stall for its 0.5 s timeout (or its 1.5 s hang).
    assert max(gaps) < 0.4, max(gaps)


async def test_stop_releases_the_task(agent: FakeEcsAgent, live: Live):
    protection = protection_for(agent, live)
    protection.start()
    live.count = 1
    await until(lambda: protection.protected)
    await protection.stop()  # the calls were closed by the shutdown; the count may lag
    assert not agent.protected
    assert bodies(agent) == [PROTECT, RELEASE]


async def test_stop_gives_up_on_an_agent_that_does_not_answer(agent: FakeEcsAgent, live: Live):
    protection = protection_for(agent, live)
    protection.start()
    live.count = 1
    await until(lambda: protection.protected)
    agent.stop()
    started = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        await protection.stop()
    assert time.monotonic() - started < 2
    assert [e["event"] for e in logs] == ["task_protection_not_released"]


async def test_protection_left_at_start_is_released_when_nothing_is_live(
    agent: FakeEcsAgent, live: Live
):
    client = AgentClient(agent.uri)
    await client.put(True, 30)
    await client.aclose()
    async with protection_for(agent, live).running():
        await until(lambda: not agent.protected)
    assert bodies(agent) == [{"ProtectionEnabled": True, "ExpiresInMinutes": 30}, RELEASE]


async def test_off_ecs_there_is_no_protection(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ECS_AGENT_URI", raising=False)
    assert task_protection(Settings(), Live()) is None
    monkeypatch.setenv("ECS_AGENT_URI", "http://169.254.170.2/api/abc-123")
    protection = task_protection(Settings(), Live())
    assert protection is not None
    assert protection.agent.url == "http://169.254.170.2/api/abc-123/task-protection/v1/state"
    assert protection.minutes == 10
    await protection.agent.aclose()
