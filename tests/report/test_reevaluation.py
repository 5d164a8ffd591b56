"""A report always arrives: an evaluation that fails leaves the report ready without it, and the
evaluation is tried again in the background (bounded, once across instances) or on request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from harness import interview_model
from harness.fake_openai import Fail, FakeOpenAI, Hang, Raw, Rotation, ToolCall, hostile
from interview.config import Settings
from interview.domain import ReportStatus
from interview.events import ResultsChanged
from interview.report import Report
from interview.report.evaluation_prompt import TOOL_NAME
from interview.report.render import render
from interview.report.writer import InterviewRunning, NotEvaluable, RetryPolicy
from interview.runtime import Runtime
from interview.store import SessionRow

ANSWER = "I designed the billing service, split it into queues and workers, and owned its rollout."
NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
RETRY_SECONDS = 60


class Clock:
    """The domain's time, moved by the test."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def build(url: str, fake: FakeOpenAI, clock: Clock, retries: int = 2) -> Runtime:
    settings = Settings(
        database_url=url,
        voice_enabled=False,
        interviewer="scripted",
        openai_api_key=fake.api_key,
        openai_base_url=fake.base_url,
        evaluation_max_attempts=1,
        evaluation_timeout_seconds=1.0,
        evaluation_retry_attempts=retries,
        evaluation_retry_seconds=RETRY_SECONDS,
    )
    return Runtime.build(settings, clock=clock)


@pytest.fixture
async def started() -> AsyncIterator[list[Runtime]]:
    """The runtimes a test builds, started on their database and stopped after it."""
    runtimes: list[Runtime] = []
    yield runtimes
    for runtime in runtimes:
        await runtime.reports.stop_evaluations()
        await runtime.events.stop()
        await runtime.store.dispose()


async def start(runtimes: list[Runtime], runtime: Runtime) -> Runtime:
    await runtime.store.migrate()
    await runtime.events.start()
    runtimes.append(runtime)
    return runtime


async def ended_interview(runtime: Runtime, *answers: str) -> SessionRow:
    row = (await runtime.service.start("u")).session
    for text in answers:
        await runtime.service.answer(row, text)
    ended = await runtime.service.end(row)
    await runtime.events.flush()
    await runtime.reports.wait()
    return ended


async def report(runtime: Runtime, session_id: str) -> Report:
    stored = await runtime.store.get_report(session_id)
    assert stored is not None and stored.status == ReportStatus.ready, stored
    return Report.model_validate(stored.body)


async def results_events(runtime: Runtime, session_id: str) -> list[str]:
    await runtime.events.flush()
    return [
        e.body.status
        for e in await runtime.events.history(session_id)
        if isinstance(e.body, ResultsChanged)
    ]


async def background_pass(runtime: Runtime) -> int:
    started = await runtime.reports.evaluate_due()
    await runtime.reports.wait_evaluations()
    return started


async def test_a_failing_model_leaves_the_report_ready_with_its_answers(
    database_url, fake_openai, started
):
    clock = Clock()
    runtime = await start(started, build(database_url, fake_openai, clock))
    fake_openai.chat.default = Rotation(*hostile(TOOL_NAME, stall_seconds=2.0))
    row = await ended_interview(runtime, ANSWER)

    body = await report(runtime, row.id)
    assert body.evaluation is None and body.evaluation_status == "pending_retry"
    assert [a.text for q in body.questions for a in q.answers] == [ANSWER]
    assert body.metrics.candidate_turns == 1
    note = body.evaluation_note or ""
    assert "HTTP 500" in note and "tried again in the background" in note
    assert ANSWER not in note and fake_openai.api_key not in note
    stored = await runtime.store.get_report(row.id)
    assert stored is not None and stored.evaluation_attempts == 0
    assert stored.evaluation_due_at == NOW + timedelta(seconds=RETRY_SECONDS)
    assert await results_events(runtime, row.id) == ["ready"]
    # Over the API the results are the report itself, not a failure.
    assert isinstance(await runtime.reports.results(row), Report)


async def test_the_background_retry_fills_the_evaluation_in_when_due(
    database_url, fake_openai, started
):
    clock = Clock()
    runtime = await start(started, build(database_url, fake_openai, clock))
    fake_openai.chat.default = lambda _body: Fail(500)
    row = await ended_interview(runtime, ANSWER)
    fake_openai.chat.default = interview_model.respond  # the model is back

    clock.advance(RETRY_SECONDS - 1)
    assert await background_pass(runtime) == 0  # not due yet
    asked = len(fake_openai.chat_requests())
    clock.advance(1)
    assert await background_pass(runtime) == 1
    assert len(fake_openai.chat_requests()) == asked + 1

    body = await report(runtime, row.id)
    assert body.evaluation is not None and body.evaluation_status == "ready"
    assert body.evaluation_note is None
    assert [a.text for q in body.questions for a in q.answers] == [ANSWER]
    stored = await runtime.store.get_report(row.id)
    assert stored is not None and stored.evaluation_due_at is None
    assert stored.evaluation_attempts == 1
    assert await results_events(runtime, row.id) == ["ready", "ready"]
    assert await background_pass(runtime) == 0  # nothing is due any more


async def test_the_background_attempts_are_bounded_and_the_pauses_double(
    database_url, fake_openai, started
):
    clock = Clock()
    runtime = await start(started, build(database_url, fake_openai, clock, retries=3))
    fake_openai.chat.default = lambda _body: Raw(b"{this is not json", "application/json")
    row = await ended_interview(runtime, ANSWER)

    pauses = []
    for attempt in (1, 2):
        stored = await runtime.store.get_report(row.id)
        assert stored is not None and stored.evaluation_due_at is not None
        pauses.append((stored.evaluation_due_at - clock.now).total_seconds())
        clock.now = stored.evaluation_due_at
        assert await background_pass(runtime) == 1
        stored = await runtime.store.get_report(row.id)
        assert stored is not None and stored.evaluation_attempts == attempt
        assert (await report(runtime, row.id)).evaluation_status == "pending_retry"
    stored = await runtime.store.get_report(row.id)
    assert stored is not None and stored.evaluation_due_at is not None
    pauses.append((stored.evaluation_due_at - clock.now).total_seconds())
    assert pauses == [RETRY_SECONDS, 2 * RETRY_SECONDS, 4 * RETRY_SECONDS]

    clock.now = stored.evaluation_due_at
    assert await background_pass(runtime) == 1  # the third and last
    stored = await runtime.store.get_report(row.id)
    assert stored is not None and stored.evaluation_due_at is None
    assert stored.evaluation_attempts == 3
    body = await report(runtime, row.id)
    assert body.evaluation is None and body.evaluation_status == "failed"
    assert "unreadable answer: not JSON" in (body.evaluation_note or "")
    assert "No further attempt" in (body.evaluation_note or "")
    assert [a.text for q in body.questions for a in q.answers] == [ANSWER]
    clock.advance(10 * 24 * 3600)
    assert await background_pass(runtime) == 0
    # The final state changed the report: its readers are told.
    assert await results_events(runtime, row.id) == ["ready", "ready"]


def test_the_pause_is_capped_at_an_hour():
    policy = RetryPolicy(attempts=50, first_delay_seconds=60)
    assert [policy.delay(n).total_seconds() for n in range(8)] == [
        60, 120, 240, 480, 960, 1920, 3600, 3600,
    ]  # fmt: skip
    assert policy.delay(10_000).total_seconds() == 3600


async def test_no_background_attempt_when_none_are_configured(database_url, fake_openai, started):
    clock = Clock()
    runtime = await start(started, build(database_url, fake_openai, clock, retries=0))
    fake_openai.chat.default = lambda _body: Fail(502)
    row = await ended_interview(runtime, ANSWER)
    body = await report(runtime, row.id)
    assert body.evaluation_status == "failed" and "HTTP 502" in (body.evaluation_note or "")
    stored = await runtime.store.get_report(row.id)
    assert stored is not None and stored.evaluation_due_at is None


async def test_a_restart_finds_the_due_evaluations_in_the_database(
    database_url, fake_openai, started
):
    clock = Clock()
    first = build(database_url, fake_openai, clock)
    await first.store.migrate()
    await first.events.start()
    fake_openai.chat.default = lambda _body: Fail(500)
    row = await ended_interview(first, ANSWER)
    await first.events.stop()
    await first.store.dispose()

    fake_openai.chat.default = interview_model.respond
    clock.advance(RETRY_SECONDS)
    second = await start(started, build(database_url, fake_openai, clock))
    assert await background_pass(second) == 1
    assert (await report(second, row.id)).evaluation is not None


async def test_an_operator_asks_for_a_new_evaluation_before_it_is_due(
    database_url, fake_openai, started
):
    clock = Clock()
    runtime = await start(started, build(database_url, fake_openai, clock, retries=1))
    fake_openai.chat.default = lambda _body: Fail(500)
    row = await ended_interview(runtime, ANSWER)
    clock.advance(RETRY_SECONDS)
    assert await background_pass(runtime) == 1  # the only background attempt, failed
    assert (await report(runtime, row.id)).evaluation_status == "failed"

    fake_openai.chat.default = interview_model.respond
    await runtime.reports.request_evaluation(row)  # runs now: nothing is due
    await runtime.reports.wait_evaluations()
    body = await report(runtime, row.id)
    assert body.evaluation is not None and body.evaluation_status == "ready"
    stored = await runtime.store.get_report(row.id)
    assert stored is not None and stored.evaluation_due_at is None
    assert stored.evaluation_attempts == 1  # the budget started again
    assert await results_events(runtime, row.id) == ["ready", "ready", "ready"]


async def test_a_new_evaluation_that_fails_keeps_the_earlier_one(
    database_url, fake_openai, started
):
    clock = Clock()
    runtime = await start(started, build(database_url, fake_openai, clock, retries=1))
    row = await ended_interview(runtime, ANSWER)
    earlier = (await report(runtime, row.id)).evaluation
    assert earlier is not None

    fake_openai.chat.default = lambda _body: Fail(500)
    await runtime.reports.request_evaluation(row)
    await runtime.reports.wait_evaluations()
    body = await report(runtime, row.id)
    assert body.evaluation == earlier and body.evaluation_status == "ready"
    note = body.evaluation_note or ""
    assert "A new evaluation failed" in note
    # The documents say so beside the evaluation they show.
    assert note in render(body, "md") and note in render(body, "html")


async def test_what_cannot_be_evaluated_says_why(database_url, fake_openai, started):
    clock = Clock()
    runtime = await start(started, build(database_url, fake_openai, clock))
    running = (await runtime.service.start("u")).session
    with pytest.raises(InterviewRunning):
        await runtime.reports.request_evaluation(running)
    silent = await ended_interview(runtime)
    body = await report(runtime, silent.id)
    assert body.evaluation_status == "nothing_to_evaluate"
    with pytest.raises(NotEvaluable) as refused:
        await runtime.reports.request_evaluation(silent)
    assert refused.value.code == "nothing_to_evaluate"

    offline = await start(
        started,
        Runtime.build(Settings(database_url=database_url, voice_enabled=False), clock=clock),
    )
    answered = await ended_interview(offline, ANSWER)
    assert (await report(offline, answered.id)).evaluation_status == "not_configured"
    with pytest.raises(NotEvaluable) as refused:
        await offline.reports.request_evaluation(answered)
    assert refused.value.code == "evaluation_not_configured"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_instances_evaluate_a_due_report_once(database_url, fake_openai, started):
    clock = Clock()
    first = await start(started, build(database_url, fake_openai, clock))
    second = await start(started, build(database_url, fake_openai, clock))
    fake_openai.chat.default = lambda _body: Fail(500)
    row = await ended_interview(first, ANSWER)
    asked = len(fake_openai.chat_requests())

    # The model is back, and slow: the first instance to take the report holds it a while.
    def slow(body: dict) -> ToolCall:
        answer = interview_model.respond(body)
        assert isinstance(answer, ToolCall)
        answer.delay = 0.05
        return answer

    fake_openai.chat.default = slow
    clock.advance(RETRY_SECONDS)
    for _ in range(3):  # several looks from both, at once and after each other
        await asyncio.gather(background_pass(first), background_pass(second))
    assert len(fake_openai.chat_requests()) == asked + 1
    body = await report(second, row.id)
    assert body.evaluation is not None
    stored = await second.store.get_report(row.id)
    assert stored is not None and stored.evaluation_attempts == 1


async def test_a_request_made_while_an_attempt_fails_is_not_lost(
    database_url, fake_openai, started
):
    clock = Clock()
    runtime = await start(started, build(database_url, fake_openai, clock))
    fake_openai.chat.default = lambda _body: Fail(500)
    row = await ended_interview(runtime, ANSWER)

    # The first background attempt is under way, and will fail, when an operator asks.
    fake_openai.chat.default = lambda _body: Hang(0.5)  # 504 after half a second
    clock.advance(RETRY_SECONDS)
    assert await runtime.reports.evaluate_due() == 1
    await asyncio.sleep(0.2)
    clock.advance(1)
    await runtime.reports.request_evaluation(row)
    await runtime.reports.wait_evaluations()
    stored = await runtime.store.get_report(row.id)
    assert stored is not None and stored.evaluation_attempts == 0
    assert stored.evaluation_due_at == clock.now  # the request's, not the failed attempt's

    fake_openai.chat.default = interview_model.respond
    assert await background_pass(runtime) == 1
    assert (await report(runtime, row.id)).evaluation is not None
