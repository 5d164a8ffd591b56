"""The Store's queries against real SQLite and PostgreSQL databases."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, StatementError

from interview.config import to_async_database_url
from interview.domain import (
    ConnectionState,
    EndReason,
    ReportStatus,
    Role,
    SessionStatus,
    TurnKind,
    TurnSource,
)
from interview.store import SessionRow, Store, TurnRow

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store(to_async_database_url(database_url))
    await store.migrate()
    yield store
    await store.dispose()


def session(session_id: str = "s1") -> SessionRow:
    return SessionRow(
        id=session_id,
        token_hash="0" * 64,
        user_id="u",
        plan_id="p",
        meta={"team": "search", "level": 3},
        status="created",
        created_at=T0,
        expires_at=T0 + timedelta(hours=1),
        question_index=0,
        follow_ups_used=0,
        connection_state="none",
    )


def turn(index: int, session_id: str = "s1", **kw) -> TurnRow:
    values = dict(
        session_id=session_id,
        index=index,
        role="candidate",
        kind="answer",
        text=f"turn {index}",
        source="text",
        question_index=0,
        started_at=T0,
        ended_at=T0,
    )
    values.update(kw)
    return TurnRow(**values)


async def test_session_round_trip_keeps_aware_utc_times_and_metadata(store: Store):
    row = session()
    # A non-UTC aware time is stored as the same instant.
    row.started_at = datetime(2026, 11, 28, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    await store.insert_session(row)
    loaded = await store.get_session("s1")
    assert loaded is not None
    assert loaded.created_at == T0 and loaded.created_at.tzinfo is not None
    assert loaded.started_at == datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    assert loaded.meta == {"team": "search", "level": 3}
    assert await store.get_session("nope") is None


async def test_turns_are_ordered_and_indices_unique(store: Store):
    await store.insert_session(session())
    for i in (2, 0, 1):
        await store.add_turn(turn(i))
    assert [t.index for t in await store.list_turns("s1")] == [0, 1, 2]
    assert await store.count_turns("s1") == 3
    with pytest.raises(IntegrityError):
        await store.add_turn(turn(1, text="a second turn 1"))
    # The refused write changed nothing already saved.
    assert [t.text for t in await store.list_turns("s1")] == ["turn 0", "turn 1", "turn 2"]


async def test_add_turn_moves_session_fields_in_the_same_commit(store: Store):
    await store.insert_session(session())
    await store.add_turn(turn(0), question_index=2, status="active")
    loaded = await store.get_session("s1")
    assert loaded is not None and (loaded.question_index, loaded.status) == (2, "active")


async def test_a_session_ends_once(store: Store):
    await store.insert_session(session())
    assert await store.end_session_if_open(
        "s1", status=SessionStatus.ended, reason=EndReason.candidate, at=T0
    )
    assert not await store.end_session_if_open(
        "s1", status=SessionStatus.expired, reason=EndReason.timeout, at=T0
    )
    loaded = await store.get_session("s1")
    assert loaded is not None and (loaded.status, loaded.end_reason) == ("ended", "candidate")


async def test_expiry_and_report_queries(store: Store):
    await store.insert_session(session("old"))
    fresh = session("fresh")
    fresh.expires_at = T0 + timedelta(days=1)
    await store.insert_session(fresh)
    assert list(await store.open_sessions_expired_by(T0 + timedelta(hours=2))) == ["old"]

    await store.end_session_if_open(
        "old", status=SessionStatus.expired, reason=EndReason.timeout, at=T0
    )
    assert list(await store.ended_sessions_without_ready_report()) == ["old"]
    await store.save_report("old", status=ReportStatus.pending, at=T0)
    assert list(await store.ended_sessions_without_ready_report()) == ["old"]
    await store.save_report("old", status=ReportStatus.ready, at=T0, body={"ok": True})
    assert list(await store.ended_sessions_without_ready_report()) == []
    report = await store.get_report("old")
    assert report is not None and report.body == {"ok": True}


async def test_ping(store: Store):
    await store.ping()


async def test_values_come_back_as_the_domain_enums(store: Store):
    # Callers may pass the enums or their values (StrEnum): both are stored as the value.
    await store.insert_session(session(), turn(0, role=Role.interviewer, kind="question"))
    await store.add_turn(turn(1, source=TurnSource.voice), status=SessionStatus.active)
    await store.end_session_if_open(
        "s1", status=SessionStatus.ended, reason=EndReason.plan_finished, at=T0
    )
    await store.save_report("s1", status=ReportStatus.failed, at=T0, error="model down")

    loaded = await store.get_session("s1")
    assert loaded is not None
    assert (loaded.status, loaded.end_reason, loaded.connection_state) == (
        SessionStatus.ended,
        EndReason.plan_finished,
        ConnectionState.closed,
    )
    assert type(loaded.status) is SessionStatus and type(loaded.end_reason) is EndReason
    assert type(loaded.connection_state) is ConnectionState
    first, second = await store.list_turns("s1")
    assert (first.role, first.kind, first.source) == (Role.interviewer, TurnKind.question, "text")
    assert (type(first.role), type(first.kind), type(first.source)) == (Role, TurnKind, TurnSource)
    assert (second.role, second.kind, second.source) == (
        Role.candidate,
        TurnKind.answer,
        TurnSource.voice,
    )
    report = await store.get_report("s1")
    assert report is not None and type(report.status) is ReportStatus
    assert (report.status, report.error) == (ReportStatus.failed, "model down")


async def test_a_value_outside_an_enum_is_refused(store: Store):
    await store.insert_session(session())
    with pytest.raises(StatementError, match="paused"):
        await store.update_session("s1", status="paused")
    with pytest.raises(StatementError, match="monologue"):
        await store.add_turn(turn(0, kind="monologue"))
    with pytest.raises(StatementError, match="done"):
        await store.save_report("s1", status="done", at=T0)  # type: ignore[arg-type]  # on purpose
    loaded = await store.get_session("s1")
    assert loaded is not None and loaded.status is SessionStatus.created
    assert await store.count_turns("s1") == 0 and await store.get_report("s1") is None

    # A value written behind the Store's back is refused on the way out, not passed on as text.
    async with store.engine.begin() as conn:
        await conn.execute(text("UPDATE interview_sessions SET status = 'paused'"))
    with pytest.raises(LookupError, match="paused"):
        await store.get_session("s1")
