"""ECS task scale-in protection: while this instance holds live voice interviews its task is
protected from scale-in and deployments, through the ECS agent's endpoint, and released after.

The endpoint (AWS: "Amazon ECS task scale-in protection endpoint"):
`PUT $ECS_AGENT_URI/task-protection/v1/state` with `{"ProtectionEnabled": true,
"ExpiresInMinutes": n}` (1 to 2880) or `{"ProtectionEnabled": false}`; `GET` reads the state.
The agent calls the ECS API (UpdateTaskProtection, GetTaskProtection) with the task role and
answers `{"protection": {"ProtectionEnabled", "ExpirationDate", "TaskArn"}}`, or
`{"failure": {"Arn", "Reason", "Detail"}}` when ECS refused (a task outside a service, a task
stopping), or `{"error": {"Arn", "Code", "Message"}}` when the agent or the API failed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import httpx
import structlog
from pydantic import BaseModel, Field, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from interview.config import Settings

log = structlog.get_logger(__name__)

STATE_PATH = "/task-protection/v1/state"
# How often the live count is looked at: a call that starts is protected within this long, and
# the task is released as soon after the last one ends.
CHECK_SECONDS = 1.0
# One request to the agent, which calls the ECS API itself (usually well under a second).
REQUEST_TIMEOUT_SECONDS = 5.0
# After a failure, retries back off exponentially (with jitter) up to this.
RETRY_MAX_SECONDS = 30.0
# stop() waits this long at most: the request under way, then the release.
STOP_TIMEOUT_SECONDS = 2 * REQUEST_TIMEOUT_SECONDS + 1


class AgentFailed(Exception):
    """The agent did not do what was asked: unreachable, too slow, an error or a refusal."""


class Protection(BaseModel):
    """The task's protection, as the agent reports it."""

    enabled: bool = Field(alias="ProtectionEnabled")
    expires_at: datetime | None = Field(default=None, alias="ExpirationDate")
    task_arn: str | None = Field(default=None, alias="TaskArn")


class _Failure(BaseModel):
    """ECS refused (a task outside a service, a task stopping)."""

    reason: str | None = Field(default=None, alias="Reason")
    detail: str | None = Field(default=None, alias="Detail")


class _Error(BaseModel):
    """The agent or the ECS API failed."""

    code: str | None = Field(default=None, alias="Code")
    message: str | None = Field(default=None, alias="Message")


class _Answer(BaseModel):
    protection: Protection | None = None
    failure: _Failure | None = None
    error: _Error | None = None


class AgentClient:
    """Requests to the agent's task-protection endpoint, their answers checked."""

    def __init__(self, agent_uri: str, timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        self.url = agent_uri.rstrip("/") + STATE_PATH
        # The agent is on a link-local address: never through a proxy the environment names.
        self._http = httpx.AsyncClient(timeout=timeout, trust_env=False)

    async def get(self) -> Protection:
        return await self._request("GET", None)

    async def put(self, enabled: bool, minutes: int | None = None) -> Protection:
        """Protect the task for `minutes` (enabled), or release it."""
        body: dict[str, Any] = {"ProtectionEnabled": enabled}
        if enabled and minutes is not None:
            body["ExpiresInMinutes"] = minutes
        protection = await self._request("PUT", body)
        if protection.enabled is not enabled:
            raise AgentFailed(f"asked for ProtectionEnabled={enabled}, got {protection.enabled}")
        return protection

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(self, method: str, body: dict[str, Any] | None) -> Protection:
        try:
            response = await self._http.request(method, self.url, json=body)
        except httpx.HTTPError as exc:
            raise AgentFailed(f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        try:
            answer = _Answer.model_validate_json(response.content)
        except ValidationError:
            raise AgentFailed(
                f"HTTP {status}, not an agent answer: {response.text[:200]!r}"
            ) from None
        if answer.failure is not None:
            failure = answer.failure
            raise AgentFailed(f"HTTP {status}, failure {failure.reason}: {failure.detail}")
        if answer.error is not None:
            raise AgentFailed(f"HTTP {status}, error {answer.error.code}: {answer.error.message}")
        if status != 200 or answer.protection is None:
            raise AgentFailed(f"HTTP {status} without a protection: {response.text[:200]!r}")
        return answer.protection


class TaskProtection:
    """Keeps the task protected while `live()` counts live voice interviews: protected when the
    count rises above zero, renewed halfway through each protection, released when it is zero.

    Failures are logged and retried with backoff in this task of its own; they never reach the
    calls. A retry comes at once when what is wanted changes (a call started, the last ended).
    """

    def __init__(
        self,
        agent: AgentClient,
        live: Callable[[], int],
        minutes: int,
        *,
        check_seconds: float = CHECK_SECONDS,
        retry_max_seconds: float = RETRY_MAX_SECONDS,
        renew_every: float | None = None,
    ) -> None:
        self.agent = agent
        self.minutes = minutes
        # Halfway through each protection: time enough for the retries of a failing renewal.
        self._renew_every = renew_every if renew_every is not None else minutes * 60 / 2
        self._live = live
        self._check_seconds = check_seconds
        self._retry_max_seconds = retry_max_seconds
        # As the agent last confirmed; a new task starts unprotected.
        self.protected = False
        self._renew_at: float | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop watching, and release the task if it is protected."""
        self._stopping.set()
        try:
            async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                if self._task is not None:
                    await self._task  # it ends after the request under way
                if self.protected:
                    await self._set(False)
        except (AgentFailed, TimeoutError) as exc:
            log.warning("task_protection_not_released", error=str(exc) or type(exc).__name__)
        finally:
            if self._task is not None and not self._task.done():
                self._task.cancel()
            await self.agent.aclose()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TaskProtection]:
        self.start()
        try:
            yield self
        finally:
            await self.stop()

    # internals

    async def _run(self) -> None:
        await self._look()
        while not self._stopping.is_set():
            if self._due():
                await self._reconcile()
            await self._pause(self._check_seconds)

    async def _look(self) -> None:
        """Log what the agent says at start: a wrong URI or a missing permission shows now,
        not when the first interview needs the protection."""
        try:
            protection = await self.agent.get()
        except AgentFailed as exc:
            log.warning("task_protection_unavailable", error=str(exc))
            return
        self.protected = protection.enabled
        if protection.enabled:  # left by an earlier process: renewed or released at once
            self._renew_at = asyncio.get_running_loop().time()
        log.info("task_protection_ready", protected=protection.enabled, task=protection.task_arn)

    def _wanted(self) -> bool:
        return self._live() > 0

    def _due(self) -> bool:
        wanted = self._wanted()
        if wanted != self.protected:
            return True
        renew_at = self._renew_at
        return wanted and renew_at is not None and asyncio.get_running_loop().time() >= renew_at

    async def _reconcile(self) -> None:
        """Bring the agent to what is wanted, retrying until it is, nothing is due any more
        (the call ended meanwhile) or the service stops."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(AgentFailed),
            wait=wait_exponential_jitter(initial=1, max=self._retry_max_seconds),
            stop=lambda _state: self._stopping.is_set() or not self._due(),
            sleep=self._backoff,
            before_sleep=self._failed,
            reraise=True,
        )
        with contextlib.suppress(AgentFailed):
            async for attempt in retrying:
                with attempt:
                    if self._due() and not self._stopping.is_set():
                        await self._set(self._wanted())

    async def _set(self, wanted: bool) -> None:
        loop = asyncio.get_running_loop()
        asked_at = loop.time()
        renewal = wanted and self.protected
        protection = await self.agent.put(wanted, self.minutes if wanted else None)
        self.protected = protection.enabled
        self._renew_at = asked_at + self._renew_every if wanted else None
        if wanted:
            log.info(
                "task_protection_renewed" if renewal else "task_protected",
                minutes=self.minutes,
                expires_at=protection.expires_at.isoformat() if protection.expires_at else None,
                live=self._live(),
            )
        else:
            log.info("task_protection_released")

    async def _backoff(self, seconds: float) -> None:
        """The wait before a retry, cut short on stop or when what is wanted changes."""
        loop = asyncio.get_running_loop()
        wanted = self._wanted()
        deadline = loop.time() + seconds
        while not self._stopping.is_set() and self._wanted() == wanted:
            left = deadline - loop.time()
            if left <= 0:
                return
            await self._pause(min(left, self._check_seconds))

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _failed(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.warning(
            "task_protection_failed",
            wanted=self._wanted(),
            attempt=state.attempt_number,
            retry_in_s=round(state.upcoming_sleep, 1),
            error=str(error),
        )


def task_protection(settings: Settings, live: Callable[[], int]) -> TaskProtection | None:
    """The protection for this task, or None off ECS (no ECS_AGENT_URI)."""
    if settings.ecs_agent_uri is None:
        return None
    return TaskProtection(
        AgentClient(settings.ecs_agent_uri), live, settings.task_protection_minutes
    )
