"""The session lifecycle, driven through the domain service on real databases."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import select, update

from harness.fake_openai import Fail, FakeOpenAI
from interview.config import Settings
from interview.domain import (
    ConnectionState,
    EndReason,
    Interruption,
    PassState,
    ReportStatus,
    Transcription,
    TurnKind,
)
from interview.events import (
    ConnectionChanged,
    Event,
    InterviewerModeChanged,
    StatusChanged,
    TurnCommitted,
)
from interview.plans import PlanCatalog, UnknownPlan
from interview.report import Report
from interview.report.metrics import NO_EVALUATION
from interview.report.writer import InterviewRunning, ResultsNotReady
from interview.runtime import Runtime
from interview.sessions import InterviewService, InvalidAnswer, SessionClosed, SpokenAudio
from interview.speech.errors import UnknownVoice
from interview.store import SessionRow
from interview.store.answer_audio import AnswerAudio
from interview.store.tables import AnswerAudioRow

LONG = "I designed the billing service, split it into queues and workers, and owned its rollout."


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def build(url: str, clock: Clock, **settings) -> Runtime:
    """The service's parts as production wires them, with voice off and the test's clock."""
    return Runtime.build(Settings(database_url=url, voice_enabled=False, **settings), clock=clock)


@pytest.fixture
async def runtime(database_url: str, clock: Clock) -> AsyncIterator[Runtime]:
    parts = build(database_url, clock)
    await parts.store.migrate()
    await parts.events.start()
    yield parts
    await parts.events.flush()  # an end reaches the report writer...
    await parts.reports.wait()  # ...which writes its report
    await parts.events.stop()
    await parts.store.dispose()


@pytest.fixture
def service(runtime: Runtime) -> InterviewService:
    return runtime.service


async def stored(service: InterviewService, session_id: str) -> SessionRow:
    row = await service.store.get_session(session_id)
    assert row is not None
    return row


async def ready_report(runtime: Runtime, session_id: str) -> Report:
    for _ in range(100):
        row = await runtime.store.get_session(session_id)
        assert row is not None
        outcome = await runtime.reports.results(row)
        if isinstance(outcome, Report):
            return outcome
        assert outcome == ResultsNotReady(ReportStatus.pending)
        await asyncio.sleep(0.02)
    raise AssertionError("report never became ready")


async def test_full_text_interview_follows_the_plan(
    runtime: Runtime, service: InterviewService, clock: Clock
):
    started = await service.start("user-1", plan_id="customer-support-screen")
    row = started.session
    plan = service.plans.get("customer-support-screen")
    assert row.status == "created"
    [opening] = await service.transcript(row)
    assert opening.role == "interviewer" and plan.questions[0].text in opening.text

    clock.advance(seconds=5)
    outcome = await service.answer(row, "I helped.")  # short: a follow-up
    assert outcome.interviewer_turn.kind == "follow_up"
    assert outcome.session.status == "active"
    for i in range(len(plan.questions)):
        clock.advance(seconds=20)
        outcome = await service.answer(row, f"{LONG} ({i})")
    assert outcome.interviewer_turn.kind == "close"
    assert outcome.session.status == "ended" and outcome.session.end_reason == "plan_finished"

    turns = await service.transcript(row)
    assert [t.index for t in turns] == list(range(len(turns)))
    assert [t.role for t in turns[:3]] == ["interviewer", "candidate", "interviewer"]
    assert turns[-1].text.endswith(plan.closing)

    report = await ready_report(runtime, row.id)
    assert report.metrics.questions_covered == report.metrics.questions_total == 4
    assert report.metrics.candidate_turns == 5
    assert report.questions[0].follow_ups_asked == [plan.questions[0].follow_ups[0]]
    assert [a.text for a in report.questions[0].answers] == ["I helped.", f"{LONG} (0)"]
    assert report.metrics.mean_response_delay_seconds == pytest.approx((5 + 20 * 4) / 5)
    assert report.evaluation is None and report.evaluation_note == NO_EVALUATION

    with pytest.raises(SessionClosed):
        await service.answer(row, LONG)


async def test_answers_are_validated(service: InterviewService):
    row = (await service.start("u")).session
    with pytest.raises(InvalidAnswer, match="empty"):
        await service.answer(row, "   \n ")
    limit = Settings.model_fields["max_answer_chars"].default  # the service's setting
    with pytest.raises(InvalidAnswer, match=f"limit is {limit}"):
        await service.answer(row, "x" * (limit + 1))
    assert len(await service.transcript(row)) == 1  # nothing was recorded


async def test_unknown_plan(service: InterviewService):
    with pytest.raises(UnknownPlan):
        await service.start("u", plan_id="nope")


async def test_a_session_speaks_with_its_chosen_voice(service: InterviewService):
    chosen = await service.start("u", plan_id="customer-support-screen", voice="bm_george")
    stored = await service.store.get_session(chosen.session.id)
    assert stored is not None and stored.voice == "bm_george"
    assert service.voice_for(stored) == "bm_george"
    assert (await service.status(stored)).voice == "bm_george"

    # Without a choice: the plan's voice; a plan naming none leaves it to TTS_VOICE (None).
    plain = (await service.start("u", plan_id="customer-support-screen")).session
    assert plain.voice is None and service.voice_for(plain) == "af_sarah"
    plan = service.plans.get("customer-support-screen")
    service.plans = PlanCatalog([plan.model_copy(update={"voice": None})])
    assert service.voice_for(plain) is None
    assert service.voice_for(stored) == "bm_george"


async def test_a_chosen_voice_is_checked_before_anything_is_stored(runtime: Runtime):
    # No engine loaded (voice off here): only the name's form is checked (tests/speech/
    # test_stack.py checks names against loaded engines).
    service = runtime.service
    assert runtime.speech.voices() is None
    assert (await service.start("u", voice="zz_unheard")).session.voice == "zz_unheard"
    for bad in ("Af_heart", "af-heart", "af_", "a_heart", "af_heart ", "", "bf_emma; drop"):
        with pytest.raises(UnknownVoice) as raised:
            await service.start("u", voice=bad)
        assert raised.value.valid is None
    # A refused start stores nothing: only the accepted session exists.
    later = service.clock() + timedelta(days=1)
    assert len(await service.store.open_sessions_expired_by(later)) == 1


async def test_end_is_idempotent_and_keeps_first_reason(
    runtime: Runtime, service: InterviewService
):
    row = (await service.start("u")).session
    with pytest.raises(InterviewRunning):
        await runtime.reports.results(row)
    first = await service.end(row)
    again = await service.end(row, EndReason.timeout)
    assert (first.status, first.end_reason) == ("ended", "candidate")
    assert (again.end_reason, again.ended_at) == ("candidate", first.ended_at)
    report = await ready_report(runtime, row.id)
    assert report.end_reason == "candidate"
    assert report.metrics.questions_covered == 0
    assert report.questions[0].asked and not report.questions[0].answered


async def test_sessions_expire_with_reason_timeout(runtime: Runtime, clock: Clock):
    service = runtime.service
    started = await service.start("u")
    clock.advance(minutes=61)
    row = await runtime.access.authenticate(started.session.id, started.token)
    assert (row.status, row.end_reason) == ("expired", "timeout")
    with pytest.raises(SessionClosed):
        await service.answer(row, LONG)
    assert (await ready_report(runtime, row.id)).end_reason == "timeout"


async def test_sweeper_expires_idle_sessions(service: InterviewService, clock: Clock):
    idle = (await service.start("idle")).session
    clock.advance(minutes=30)
    live = (await service.start("live")).session
    clock.advance(minutes=31)
    assert await service.expire_due_sessions() == 1
    assert (await stored(service, idle.id)).status == "expired"
    assert (await stored(service, live.id)).status == "created"


async def test_concurrent_answers_keep_turns_consistent(service: InterviewService):
    row = (await service.start("u")).session
    outcomes = await asyncio.gather(*(service.answer(row, f"{LONG} {i}") for i in range(3)))
    turns = await service.transcript(row)
    assert [t.index for t in turns] == list(range(7))
    assert [t.role for t in turns] == ["interviewer", *["candidate", "interviewer"] * 3]
    assert {o.interviewer_turn.question_index for o in outcomes} == {1, 2, 3}  # one each


async def test_a_first_connection_activates_the_session_and_an_ended_one_only_closes(
    runtime: Runtime, service: InterviewService, clock: Clock
):
    row = (await service.start("u")).session
    clock.advance(seconds=3)
    await service.connection_changed(row.id, ConnectionState.connecting)
    assert (await stored(service, row.id)).status == "created"
    await service.connection_changed(row.id, ConnectionState.connected)
    await service.connection_changed(row.id, ConnectionState.connected)  # no change, no event
    active = await stored(service, row.id)
    assert (active.status, active.connection_state) == ("active", "connected")
    assert active.started_at == clock()
    await service.end(active)
    await service.connection_changed(row.id, ConnectionState.connected)
    assert (await stored(service, row.id)).connection_state == "closed"
    await runtime.events.flush()
    changes = [
        (type(e.body).__name__, getattr(e.body, "state", None) or getattr(e.body, "status", None))
        for e in await runtime.events.history(row.id)
        if isinstance(e.body, ConnectionChanged | StatusChanged)
    ]
    assert changes == [
        ("StatusChanged", "created"),
        ("ConnectionChanged", "connecting"),
        ("ConnectionChanged", "connected"),
        ("StatusChanged", "active"),
        ("StatusChanged", "ended"),
    ]


async def test_the_interviewer_mode_follows_the_stored_lines_across_a_restart(
    database_url: str, clock: Clock, fake_openai: FakeOpenAI
):
    """The language model fails for one turn on one instance; the next turn, on a restarted
    one, is the model's again. The status and the "interviewer" events come from the stored
    lines, so the recovery is announced and counted though this process saw no failure."""

    def llm_service() -> InterviewService:
        return build(
            database_url,
            clock,
            openai_api_key=fake_openai.api_key,
            openai_base_url=fake_openai.base_url,
            llm_turn_budget_seconds=3,
            report_evaluation=False,
        ).service

    published: list[Event] = []  # by each instance: on PostgreSQL both read every one
    first = llm_service()
    await first.store.migrate()
    await first.events.start()
    first.events.add_listener(published.append)
    started = await first.start("user-1", plan_id="backend-engineer-screen")
    fake_openai.chat.append(Fail(500), Fail(502), Fail(503))
    stand_in = await first.answer(started.session, LONG)
    assert stand_in.interviewer_turn.degraded_reason is not None
    await first.events.stop()
    await first.store.dispose()

    second = llm_service()
    await second.events.start()
    second.events.add_listener(published.append)
    row = await second.store.get_session(started.session.id)
    assert row is not None
    health = (await second.status(row)).interviewer
    assert (health.mode, health.degraded_turns) == ("degraded", 1)
    own = await second.answer(row, LONG)
    assert own.interviewer_turn.degraded_reason is None
    await second.events.flush()
    modes = [e.body.mode for e in published if isinstance(e.body, InterviewerModeChanged)]
    assert modes == ["degraded", "normal"]
    health = (await second.status(row)).interviewer
    assert (health.mode, health.degraded_turns, health.engine) == ("normal", 1, "llm")
    assert health.last_reason is not None and "HTTP 503" in health.last_reason
    await second.events.stop()
    await second.store.dispose()


# Turn-taking in the record: a line cut by the candidate, a reply withdrawn because the answer
# went on, a check-in, a question that asks for patience.

CHECK_IN = "Take your time; tell me when you're ready."


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
    await runtime.events.flush()
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


# The accurate pass: what a spoken answer keeps for it.

PCM = (np.sin(np.linspace(0, 800, 16_000)) * 3000).astype("<i2").tobytes()  # 1 s


async def kept_audio(store, session_id: str) -> list[AnswerAudioRow]:
    async with store._db() as db:
        rows = await db.scalars(
            select(AnswerAudioRow)
            .where(AnswerAudioRow.session_id == session_id)
            .order_by(AnswerAudioRow.turn_index, AnswerAudioRow.segment)
        )
        return list(rows.all())


def spoken(clock: Clock, second: float) -> SpokenAudio:
    return SpokenAudio(pcm=PCM, sample_rate=16_000, started_at=at(clock, second))


async def test_a_spoken_answer_keeps_its_audio_for_the_accurate_pass_and_the_report_waits(
    runtime: Runtime, service: InterviewService, clock: Clock
):
    row = (await service.start("u", plan_id="backend-engineer-screen")).session
    opening = (await service.transcript(row))[0]
    await service.answer_spoken(
        row.id,
        "I built the billing service.",
        started_at=at(clock, 1),
        ended_at=at(clock, 2),
        audio=spoken(clock, 0.7),
    )
    answer = (await service.transcript(row))[1]
    assert answer.transcription == Transcription.live and answer.draft_text is None
    [audio] = await kept_audio(runtime.store, row.id)
    assert (audio.turn_index, audio.segment, audio.state) == (1, 0, PassState.pending)
    assert audio.audio == PCM and audio.live_text == "I built the billing service."
    # Its clock: the audio began 0.3 s before the speech (the pre-roll).
    assert audio.offset_ms == -300
    # What the interview knows: the question it answers and the plan's vocabulary.
    plan = runtime.plans.get("backend-engineer-screen")
    assert plan.vocabulary and " ".join(opening.text.split()) in audio.context
    assert all(term in audio.context for term in plan.vocabulary[:3])
    assert audio.deadline_at == audio.created_at + timedelta(seconds=600)
    assert await AnswerAudio(runtime.store).pending_passes(row.id) == 1

    await service.end(await service.refresh(row))
    await runtime.events.flush()
    await runtime.reports.wait()
    ended = await stored(service, row.id)
    # The report quotes the accurate transcript: none while a pass is pending.
    assert await runtime.reports.results(ended) == ResultsNotReady(ReportStatus.pending)
    assert await runtime.store.get_report(row.id) is None
    async with runtime.store._db() as db, db.begin():
        await db.execute(
            update(AnswerAudioRow)
            .where(AnswerAudioRow.session_id == row.id)
            .values(state=PassState.failed, audio=None, error="timed_out")
        )
    # Any instance's sweep settles the answer (its live text stands, flagged), then the report.
    await runtime.passes.sweep()
    report = await ready_report(runtime, row.id)
    assert report.metrics.candidate_turns == 1
    [answer_report] = report.questions[0].answers
    assert answer_report.transcription == "live_only"
    assert answer_report.transcription_note == "timed_out"
    assert report.transcript.flagged_turns == [1]


async def test_an_answer_that_went_on_keeps_a_second_stretch_on_its_own_clock(
    runtime: Runtime, service: InterviewService, clock: Clock
):
    row = (await service.start("u", plan_id="customer-support-screen")).session
    first = await service.answer_spoken(
        row.id,
        "I helped.",
        started_at=at(clock, 1),
        ended_at=at(clock, 2),
        audio=spoken(clock, 0.7),
    )
    await service.interrupt_line(
        row.id, first.interviewer_turn.index, heard="", interruption=Interruption.withdrawn
    )
    await service.answer_spoken(
        row.id,
        LONG,
        started_at=at(clock, 4),
        ended_at=at(clock, 9),
        continues=True,
        audio=spoken(clock, 3.7),
    )
    stretches = await kept_audio(runtime.store, row.id)
    assert [(s.turn_index, s.segment, s.offset_ms) for s in stretches] == [
        (1, 0, -300),
        (1, 1, 2700),
    ]
    assert [s.live_text for s in stretches] == ["I helped.", LONG]
    answer = (await service.transcript(row))[1]
    assert answer.text == f"I helped. {LONG}" and answer.transcription == Transcription.live


async def test_typed_answers_are_exact_and_keep_nothing(
    runtime: Runtime, service: InterviewService
):
    row = (await service.start("u")).session
    outcome = await service.answer(row, "I built the billing service.")
    assert outcome.candidate_turn.transcription == Transcription.typed
    assert await kept_audio(runtime.store, row.id) == []
    assert await AnswerAudio(runtime.store).pending_passes(row.id) == 0


async def test_with_the_accurate_pass_off_a_spoken_answer_is_live_only_and_keeps_no_audio(
    database_url: str, clock: Clock
):
    runtime = build(database_url, clock, accurate_stt_model="off")
    await runtime.store.migrate()
    try:
        row = (await runtime.service.start("u")).session
        await runtime.service.answer_spoken(
            row.id, "Yes.", started_at=at(clock, 1), ended_at=at(clock, 2), audio=spoken(clock, 0.7)
        )
        answer = (await runtime.service.transcript(row))[1]
        assert answer.transcription == Transcription.live_only
        assert answer.transcription_note == "not_configured"
        assert await kept_audio(runtime.store, row.id) == []
    finally:
        await runtime.store.dispose()
