"""One decision at a time per session, on every instance: races between instances on one real
PostgreSQL (two Runtimes, each with its own engine and pool, as two processes would have), and
idempotent answers and crash repair on both backends."""

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import OperationalError

from harness.postgres import PostgresServer
from interview.config import Settings
from interview.domain import OPEN_STATUSES, EndReason, Role, SessionStatus, TurnKind, TurnSource
from interview.runtime import Runtime
from interview.sessions import (
    ORPHANED_ANSWER_SECONDS,
    IdempotencyKeyReused,
    ReplyPending,
    SessionClosed,
)
from interview.store import TurnRow
from interview.store.locks import PostgresSessionLocks, SessionBusy
from interview.store.queries import SessionEnded
from interview.store.tables import AnswerKeyRow

ANSWER = "I moved the billing jobs onto a queue with retries and measured every step of it."


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def build(url: str, clock: Clock) -> Runtime:
    return Runtime.build(Settings(database_url=url, voice_enabled=False), clock=clock)


async def two_instances(url: str) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Two instances on one database: two of everything, as two processes."""
    clock = Clock()
    a, b = build(url, clock), build(url, clock)
    await a.store.migrate()
    yield a, b
    for runtime in (a, b):
        await runtime.reports.wait()
        await runtime.store.dispose()


@pytest.fixture
async def instances(database_url: str) -> AsyncIterator[tuple[Runtime, Runtime]]:
    async for pair in two_instances(database_url):
        yield pair


@pytest.fixture
async def pg_instances(postgres_server: PostgresServer) -> AsyncIterator[tuple[Runtime, Runtime]]:
    """Only PostgreSQL serves several instances (SQLite is one instance)."""
    async for pair in two_instances(postgres_server.create_database()):
        yield pair


def check_transcript(turns: list[TurnRow]) -> None:
    """Answers and lines alternate from the opening line; no question is asked twice."""
    assert [t.index for t in turns] == list(range(len(turns)))
    for i, turn in enumerate(turns):
        expected = Role.interviewer if i % 2 == 0 else Role.candidate
        assert turn.role == expected, [(t.index, t.role, t.text[:20]) for t in turns]
    asked = [t.question_index or 0 for t in turns if t.kind == TurnKind.question]
    assert asked == sorted(set(asked)), asked


async def test_an_end_racing_the_first_answer_never_leaves_a_session_stuck(pg_instances):
    a, b = pg_instances
    for trial in range(20):
        started = await a.service.start(user_id=f"race-{trial}")
        sid = started.session.id
        results: list[object] = await asyncio.gather(
            a.service.answer(started.session, ANSWER),
            b.service.end(started.session),
            return_exceptions=True,
        )
        answered, ended = results
        assert not isinstance(ended, BaseException), ended
        if isinstance(answered, BaseException):
            assert isinstance(answered, SessionClosed), answered
        row = await a.store.get_session(sid)
        assert row is not None and row.ended_at is not None
        assert row.status == SessionStatus.ended, f"trial {trial}: {row.status} after the end"
        turns = list(await a.store.list_turns(sid))
        check_transcript(turns)
        # Nothing after the end: an answer is in the transcript whole (with its reply) or not.
        assert len(turns) in (1, 3)
        assert all(t.ended_at <= row.ended_at for t in turns)
        assert (await b.service.end(row)).status == SessionStatus.ended  # a second end


async def test_answers_at_the_same_instant_on_two_instances_answer_two_questions(pg_instances):
    a, b = pg_instances
    for trial in range(10):
        started = await a.service.start(user_id=f"double-{trial}")
        text_a, text_b = f"{ANSWER} (a{trial})", f"{ANSWER} (b{trial})"
        outcomes = await asyncio.gather(
            a.service.answer(started.session, text_a), b.service.answer(started.session, text_b)
        )
        turns = list(await a.store.list_turns(started.session.id))
        check_transcript(turns)
        assert len(turns) == 5
        # Each request got its own answer back, with the line that replied to it.
        for outcome in outcomes:
            stored = turns[outcome.candidate_turn.index]
            assert stored.text == outcome.candidate_turn.text
            assert turns[outcome.interviewer_turn.index].text == outcome.interviewer_turn.text
            assert outcome.interviewer_turn.index == outcome.candidate_turn.index + 1


async def test_one_idempotency_key_stores_one_answer_however_often_it_comes(
    instances, database_url
):
    a, b = instances
    # SQLite is one instance: both requests go to it there.
    other = b if database_url.startswith("postgresql") else a
    for trial in range(10):
        started = await a.service.start(user_id=f"key-{trial}")
        key = f"key-{trial}"
        first, second = await asyncio.gather(
            a.service.answer(started.session, ANSWER, idempotency_key=key),
            other.service.answer(started.session, ANSWER, idempotency_key=key),
        )
        assert first.candidate_turn.index == second.candidate_turn.index == 1
        assert first.interviewer_turn.index == second.interviewer_turn.index == 2
        assert first.interviewer_turn.text == second.interviewer_turn.text
        again = await other.service.answer(started.session, ANSWER, idempotency_key=key)
        assert again.interviewer_turn.index == 2
        turns = list(await a.store.list_turns(started.session.id))
        check_transcript(turns)
        assert [t.text for t in turns if t.role == Role.candidate] == [ANSWER]
        # A new key is a new answer.
        fresh = await a.service.answer(started.session, ANSWER, idempotency_key=f"{key}-next")
        assert fresh.candidate_turn.index == 3


async def test_a_key_used_for_other_words_is_refused_and_changes_nothing(instances):
    a, _ = instances
    started = await a.service.start(user_id="reused")
    await a.service.answer(started.session, ANSWER, idempotency_key="k1")
    with pytest.raises(IdempotencyKeyReused):
        await a.service.answer(started.session, "Something else entirely.", idempotency_key="k1")
    assert len(await a.store.list_turns(started.session.id)) == 3


async def test_a_replayed_answer_is_returned_after_the_interview_ended(instances):
    a, _ = instances
    started = await a.service.start(user_id="replay-after-end")
    first = await a.service.answer(started.session, ANSWER, idempotency_key="last")
    await a.service.end(started.session)
    again = await a.service.answer(started.session, ANSWER, idempotency_key="last")
    assert again.candidate_turn.index == first.candidate_turn.index
    assert again.interviewer_turn.text == first.interviewer_turn.text
    with pytest.raises(SessionClosed):
        await a.service.answer(started.session, ANSWER, idempotency_key="new")


async def orphan(runtime: Runtime, session_id: str, text: str, key: str | None) -> None:
    """An answer committed by a process that died before the reply: what a SIGKILL leaves."""
    turns = await runtime.store.list_turns(session_id)
    row = await runtime.store.get_session(session_id)
    assert row is not None
    now = runtime.service.clock()
    answer = TurnRow(
        session_id=session_id,
        index=len(turns),
        role=Role.candidate,
        kind=TurnKind.answer,
        text=text,
        source=TurnSource.text,
        question_index=row.question_index,
        started_at=now,
        ended_at=now,
    )
    answer_key = None
    if key is not None:
        answer_key = AnswerKeyRow(
            session_id=session_id,
            key=key,
            request_hash=hashlib.sha256(text.encode()).hexdigest(),
            answer_index=answer.index,
            created_at=now,
        )
    await runtime.store.add_turn(answer, answer_key=answer_key, activate_at=now)


async def test_a_retry_after_a_crash_gets_the_reply_produced_again(instances):
    a, b = instances
    started = await a.service.start(user_id="crash-keyed")
    await orphan(a, started.session.id, ANSWER, key="crashed")
    outcome = await b.service.answer(started.session, ANSWER, idempotency_key="crashed")
    assert (outcome.candidate_turn.index, outcome.interviewer_turn.index) == (1, 2)
    assert outcome.interviewer_turn.kind in (TurnKind.question, TurnKind.follow_up)
    turns = list(await a.store.list_turns(started.session.id))
    check_transcript(turns)
    assert len(turns) == 3
    stored = await a.store.get_answer_key(started.session.id, "crashed")
    assert stored is not None and stored.reply_index == 2


async def test_the_next_answer_after_a_crash_answers_the_line_it_was_owed(instances):
    a, _ = instances
    started = await a.service.start(user_id="crash-unkeyed")
    await orphan(a, started.session.id, ANSWER, key=None)
    outcome = await a.service.answer(started.session, f"{ANSWER} Second.")
    # The orphan got its reply first; the new answer answers that reply.
    assert outcome.candidate_turn.index == 3
    turns = list(await a.store.list_turns(started.session.id))
    check_transcript(turns)
    assert turns[3].question_index == turns[2].question_index


async def test_the_sweeper_replies_to_an_orphaned_answer_on_any_instance(instances):
    a, b = instances
    started = await a.service.start(user_id="crash-swept")
    await orphan(a, started.session.id, ANSWER, key=None)
    assert await b.service.repair_orphaned_answers() == 0  # too recent: maybe still replying
    clock = a.service.clock
    assert isinstance(clock, Clock)
    clock.now += timedelta(seconds=ORPHANED_ANSWER_SECONDS + 1)
    assert await b.service.repair_orphaned_answers() == 1
    assert await a.service.repair_orphaned_answers() == 0
    check_transcript(list(await a.store.list_turns(started.session.id)))


async def test_a_reply_that_cannot_be_stored_says_the_answer_was(
    instances, monkeypatch: pytest.MonkeyPatch
):
    a, _ = instances
    started = await a.service.start(user_id="reply-pending")
    real_add_turn = a.store.add_turn

    async def database_gone_for_replies(row: TurnRow, **kw):
        if row.role == Role.interviewer:
            raise OperationalError("INSERT", {}, ConnectionError("server closed the connection"))
        return await real_add_turn(row, **kw)

    monkeypatch.setattr(a.store, "add_turn", database_gone_for_replies)
    with pytest.raises(ReplyPending) as pending:
        await a.service.answer(started.session, ANSWER, idempotency_key="k")
    assert pending.value.answer.index == 1
    monkeypatch.setattr(a.store, "add_turn", real_add_turn)
    outcome = await a.service.answer(started.session, ANSWER, idempotency_key="k")
    assert (outcome.candidate_turn.index, outcome.interviewer_turn.index) == (1, 2)
    check_transcript(list(await a.store.list_turns(started.session.id)))


async def test_an_ended_session_takes_no_more_turns_and_is_never_reopened(instances):
    a, _ = instances
    started = await a.service.start(user_id="guard")
    sid = started.session.id
    await a.service.end(started.session, EndReason.candidate)
    late = TurnRow(
        session_id=sid,
        index=1,
        role=Role.candidate,
        kind=TurnKind.answer,
        text=ANSWER,
        source=TurnSource.text,
        question_index=0,
        started_at=a.service.clock(),
        ended_at=a.service.clock(),
    )
    with pytest.raises(SessionEnded):
        await a.store.add_turn(late, activate_at=a.service.clock())
    assert not await a.store.activate_session(sid, a.service.clock())
    assert not await a.store.update_session(sid, question_index=3)
    row = await a.store.get_session(sid)
    assert row is not None and row.status == SessionStatus.ended and row.question_index == 0
    assert row.status not in OPEN_STATUSES
    assert len(await a.store.list_turns(sid)) == 1


async def test_a_decision_waits_for_another_instances_then_gives_up_cleanly(pg_instances):
    a, b = pg_instances
    started = await a.service.start(user_id="busy")
    impatient = PostgresSessionLocks(b.store.engine, wait_seconds=0.3)
    async with a.store.locks.hold(started.session.id):
        with pytest.raises(SessionBusy):
            async with impatient.hold(started.session.id):
                pass
    # Released: the other instance decides at once, and the lock's connection is reusable.
    async with asyncio.timeout(2), impatient.hold(started.session.id):
        pass
    outcome = await b.service.answer(started.session, ANSWER)
    assert outcome.candidate_turn.index == 1


async def test_one_instance_writes_a_report_however_many_ask(pg_instances):
    a, b = pg_instances
    saved: list[str] = []
    for runtime in (a, b):
        real_save = runtime.store.save_report

        async def counted(session_id: str, real=real_save, **kw) -> None:
            await asyncio.sleep(0.2)  # a slow evaluation: the others ask meanwhile
            saved.append(kw["status"].value)
            await real(session_id, **kw)

        runtime.store.save_report = counted
    started = await a.service.start(user_id="report-once")
    await a.service.answer(started.session, ANSWER)
    ended = await b.service.end(started.session)
    # Ended on B (its writer reacts); results asked on A and B at once; A resumes as at start.
    await asyncio.gather(
        a.reports.results(ended), b.reports.results(ended), a.reports.resume_pending()
    )
    for runtime in (a, b):
        await runtime.reports.wait()
    assert saved == ["ready"]
    for runtime in (a, b):
        assert (await runtime.reports.results(ended)).session_id == ended.id


async def test_many_sessions_answering_at_once_never_starve_a_small_pool(
    postgres_server: PostgresServer,
):
    # Every lock holder keeps a connection and needs another to write: with more answers in
    # flight than connections, only a bound on holders keeps them from waiting for ever.
    settings = Settings(
        database_url=postgres_server.create_database(),
        voice_enabled=False,
        db_pool_size=2,
        db_max_overflow=0,
    )
    runtime = Runtime.build(settings, clock=Clock())
    await runtime.store.migrate()
    try:
        sessions = [await runtime.service.start(user_id=f"pool-{i}") for i in range(12)]
        async with asyncio.timeout(20):
            outcomes = await asyncio.gather(
                *(runtime.service.answer(s.session, ANSWER) for s in sessions)
            )
        assert [o.candidate_turn.index for o in outcomes] == [1] * len(sessions)
    finally:
        await runtime.store.dispose()
