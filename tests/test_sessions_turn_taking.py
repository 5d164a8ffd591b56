"""What turn-taking changes in a session's record, driven through the domain service on real
databases: a line cut by the candidate, a reply withdrawn because the answer went on, a check-in."""

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest

from interview.domain import Interruption, TurnKind
from interview.events import Event, TurnCommitted
from interview.runtime import Runtime
from interview.sessions import InterviewService
from tests.test_sessions import Clock, build, ready_report

LONG = "I designed the billing service, split it into queues and workers, and owned its rollout."
CHECK_IN = "Take your time; tell me when you're ready."


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def runtime(database_url: str, clock: Clock) -> AsyncIterator[Runtime]:
    parts = build(database_url, clock)
    await parts.store.migrate()
    yield parts
    await parts.reports.wait()
    await parts.store.dispose()


@pytest.fixture
def service(runtime: Runtime) -> InterviewService:
    return runtime.service


def at(clock: Clock, seconds: float) -> datetime:
    return clock.now + timedelta(seconds=seconds)


async def test_a_cut_line_keeps_what_was_heard_and_the_whole_line(
    runtime: Runtime, service: InterviewService
):
    seen: list[Event] = []
    runtime.events.add_listener(seen.append)
    row = (await service.start("u", plan_id="customer-support-screen")).session
    [opening] = await service.transcript(row)
    await service.interrupt_line(
        row.id, 0, heard="Hello and welcome", interruption=Interruption.barge_in
    )
    [cut] = await service.transcript(row)
    assert (cut.text, cut.planned_text, cut.interruption) == (
        "Hello and welcome",
        opening.text,
        Interruption.barge_in,
    )
    # Published again under the same index, so clients replace the line.
    *_, again = [e.body for e in seen if isinstance(e.body, TurnCommitted)]
    assert (again.index, again.text, again.interruption) == (0, "Hello and welcome", "barge_in")
    # A reconnect repeats the whole line, not the cut one.
    current = await service.current_line(row.id)
    assert current is not None and current.text == opening.text
    # Cutting it again changes nothing (the first cut is what was heard).
    await service.interrupt_line(row.id, 0, heard="Hello", interruption=Interruption.barge_in)
    assert (await service.transcript(row))[0].text == "Hello and welcome"


async def test_asked_to_repeat_a_cut_question_the_scripted_interviewer_repeats_it(
    service: InterviewService, clock: Clock
):
    row = (await service.start("u", plan_id="customer-support-screen")).session
    [opening] = await service.transcript(row)
    await service.interrupt_line(row.id, 0, heard="Hello", interruption=Interruption.barge_in)
    outcome = await service.answer_spoken(
        row.id, "Sorry, could you repeat that?", started_at=at(clock, 1), ended_at=at(clock, 2)
    )
    reply = outcome.interviewer_turn
    assert reply.kind == TurnKind.repeat
    assert reply.text == f"Of course. {opening.text}"
    # Still the first question: a repeat moves nothing.
    assert outcome.session.question_index == 0 and outcome.session.follow_ups_used == 0


async def test_a_withdrawn_reply_and_the_answer_that_went_on_make_one_answer(
    runtime: Runtime, service: InterviewService, clock: Clock
):
    row = (await service.start("u", plan_id="customer-support-screen")).session
    first = await service.answer_spoken(
        row.id, "I helped.", started_at=at(clock, 1), ended_at=at(clock, 2)
    )
    # Short: the scripted interviewer would follow up; the candidate goes on over it.
    assert first.interviewer_turn.kind == TurnKind.follow_up
    assert first.session.follow_ups_used == 1
    await service.interrupt_line(
        row.id, first.interviewer_turn.index, heard="", interruption=Interruption.withdrawn
    )
    outcome = await service.answer_spoken(
        row.id, LONG, started_at=at(clock, 4), ended_at=at(clock, 9), continues=True
    )
    turns = await service.transcript(row)
    assert [(t.role, t.interruption) for t in turns] == [
        ("interviewer", None),
        ("candidate", None),
        ("interviewer", Interruption.withdrawn),
        ("interviewer", None),
    ]
    answer = turns[1]
    assert answer.text == f"I helped. {LONG}"
    assert answer.started_at == at(clock, 1) and answer.ended_at == at(clock, 9)
    # The whole answer is long: the next question, as if the follow-up had never been said.
    assert outcome.interviewer_turn.kind == TurnKind.question
    assert outcome.session.question_index == 1 and outcome.session.follow_ups_used == 0
    # The report counts one answer and no follow-up.
    await service.end(await service.refresh(outcome.session))
    report = await ready_report(runtime, row.id)
    assert report.metrics.candidate_turns == 1
    assert report.questions[0].follow_ups_asked == []


async def test_going_on_when_no_reply_was_withdrawn_is_an_answer_of_its_own(
    service: InterviewService, clock: Clock
):
    row = (await service.start("u", plan_id="customer-support-screen")).session
    await service.answer_spoken(row.id, LONG, started_at=at(clock, 1), ended_at=at(clock, 5))
    await service.answer_spoken(
        row.id, LONG, started_at=at(clock, 8), ended_at=at(clock, 12), continues=True
    )
    roles = [t.role for t in await service.transcript(row)]
    assert roles == ["interviewer", "candidate", "interviewer", "candidate", "interviewer"]


async def test_one_check_in_after_a_question_and_none_after_anything_else(
    runtime: Runtime, service: InterviewService
):
    row = (await service.start("u", plan_id="customer-support-screen")).session
    turn = await service.check_in(row.id, CHECK_IN)
    assert turn is not None and (turn.kind, turn.text) == (TurnKind.check_in, CHECK_IN)
    # The latest line is now the check-in: no second one.
    assert await service.check_in(row.id, CHECK_IN) is None
    # A reconnect repeats the question, not the check-in; the session did not move.
    current = await service.current_line(row.id)
    assert current is not None and current.kind == TurnKind.question
    assert (await service.refresh(row)).question_index == 0
    await service.end(row)
    assert await service.check_in(row.id, CHECK_IN) is None
    report = await ready_report(runtime, row.id)
    assert report.metrics.candidate_turns == 0


async def test_a_reflective_question_asks_for_more_patience(
    service: InterviewService, clock: Clock
):
    row = (await service.start("u", plan_id="backend-engineer-screen")).session
    questions = service.plans.get("backend-engineer-screen").questions
    assert await service.patience(row.id) == questions[0].patience == 1.0
    for i in range(2):
        await service.answer_spoken(
            row.id, f"{LONG} ({i})", started_at=at(clock, 10 * i), ended_at=at(clock, 10 * i + 5)
        )
    current = await service.store.get_session(row.id)
    assert current is not None and current.question_index == 2
    assert await service.patience(row.id) == questions[2].patience == 1.5
