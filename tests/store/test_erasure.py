"""Erasing interviews in the Store, on real SQLite and PostgreSQL: every row of an erased
interview is gone from every table, other interviews are untouched, and erasures that race (two
instances, a report or an event written meanwhile) neither fail nor leave anything behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Table, func, select

from harness.postgres import PostgresServer
from interview.config import to_async_database_url
from interview.domain import PassState, ReportStatus, SessionStatus
from interview.events import StatusChanged
from interview.store import SessionRow, Store, TurnRow
from interview.store.event_log import PostgresEventBus, event_bus_for
from interview.store.queries import SESSION_REFERENCES
from interview.store.tables import (
    AnswerAudioRow,
    AnswerKeyRow,
    Base,
    EventRow,
    InstanceRow,
    RateLimitRow,
    RelayRow,
    ReportRow,
)

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
# The tables that hold nothing of any interview (instances' heartbeats, rate-limit counters).
NOT_AN_INTERVIEW_S = {InstanceRow.__table__, RateLimitRow.__table__}


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store(to_async_database_url(database_url))
    await store.migrate()
    yield store
    await store.dispose()


def session_row(session_id: str, ended_at: datetime | None = None) -> SessionRow:
    return SessionRow(
        id=session_id,
        token_hash="0" * 64,
        user_id="u",
        candidate_name="Ada",
        plan_id="p",
        meta={"team": "search"},
        status=SessionStatus.ended if ended_at else SessionStatus.active,
        created_at=T0,
        expires_at=T0 + timedelta(hours=1),
        ended_at=ended_at,
        question_index=0,
        follow_ups_used=0,
        connection_state="none",
    )


def turn(session_id: str, index: int) -> TurnRow:
    return TurnRow(
        session_id=session_id,
        index=index,
        role="candidate",
        kind="answer",
        text=f"my answer {index}",
        source="text",
        question_index=0,
        started_at=T0,
        ended_at=T0,
    )


async def full_interview(store: Store, session_id: str, ended_at: datetime | None = None) -> None:
    """An interview with a row in every table that can hold one of its rows."""
    await store.insert_session(session_row(session_id, ended_at), turn(session_id, 0))
    async with store._db() as db, db.begin():
        db.add_all(
            [
                turn(session_id, 1),
                AnswerKeyRow(
                    session_id=session_id,
                    key="k1",
                    request_hash="0" * 64,
                    answer_index=1,
                    created_at=T0,
                ),
                ReportRow(
                    session_id=session_id,
                    status=ReportStatus.ready,
                    body={"answers": ["my answer 1"]},
                    updated_at=T0,
                ),
                EventRow(
                    session_id=session_id, type="turn", body={"text": "my answer"}, created_at=T0
                ),
                RelayRow(
                    session_id=session_id,
                    instance="i1",
                    kind="answer",
                    payload={},
                    created_at=T0,
                ),
                # A spoken answer's audio, still waiting for its accurate pass.
                AnswerAudioRow(
                    session_id=session_id,
                    turn_index=1,
                    segment=0,
                    offset_ms=-300,
                    sample_rate=16_000,
                    audio=b"\x01\x00" * 1600,
                    live_text="my answer 1",
                    context="Tell me about a system.",
                    state=PassState.pending,
                    attempts=0,
                    deadline_at=T0 + timedelta(minutes=10),
                    created_at=T0,
                ),
            ]
        )


async def rows_of(store: Store, session_id: str) -> dict[str, int]:
    """How many rows of the session each table holds, the sessions table included."""
    counts: dict[str, int] = {}
    async with store.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for column in table.columns:
                refers = any(key.column is SessionRow.__table__.c.id for key in column.foreign_keys)
                if refers or column is SessionRow.__table__.c.id:
                    found = await conn.scalar(
                        select(func.count()).select_from(table).where(column == session_id)
                    )
                    counts[f"{table.name}.{column.name}"] = int(found or 0)
    return counts


def test_every_table_is_an_interview_s_or_known_not_to_be():
    """A new table that holds an interview's rows must refer to its session (so erasing it
    deletes them); one that does not is named here, on purpose."""
    referring: set[Table] = {column.table for column in SESSION_REFERENCES}
    tables = set(Base.metadata.sorted_tables)
    assert tables - referring - {SessionRow.__table__} == NOT_AN_INTERVIEW_S
    for table in NOT_AN_INTERVIEW_S:
        assert not {"session_id", "text", "body"} & set(table.columns.keys())


async def test_deleting_an_interview_leaves_no_row_of_it_in_any_table(store: Store):
    await full_interview(store, "gone")
    await full_interview(store, "kept")
    before = await rows_of(store, "gone")
    # Every table that refers to a session is filled, so the test sees each one emptied.
    assert len(before) == len(SESSION_REFERENCES) + 1 and all(before.values()), before
    kept = await rows_of(store, "kept")

    assert await store.delete_sessions(["gone"]) == ["gone"]

    assert set((await rows_of(store, "gone")).values()) == {0}
    assert await rows_of(store, "kept") == kept
    assert await store.get_session("kept") is not None
    # Again (a retry, another instance's erasure): nothing to do, and no error.
    assert await store.delete_sessions(["gone"]) == []
    assert await store.delete_sessions([]) == []


async def test_finding_and_deleting_interviews_ended_before_a_cutoff(store: Store):
    for i, days in enumerate((100, 95, 91, 30)):
        await full_interview(store, f"s{i}", ended_at=T0 - timedelta(days=days))
    await full_interview(store, "live")
    cutoff = T0 - timedelta(days=90)

    assert await store.sessions_ended_before(cutoff, limit=2) == ["s0", "s1"]
    assert await store.sessions_ended_before(cutoff, limit=10) == ["s0", "s1", "s2"]
    assert await store.count_sessions_ended_before(cutoff) == 3
    # An id given with a cutoff is deleted only if it ended before it.
    deleted = await store.delete_sessions(["s2", "s3", "live"], ended_before=cutoff)
    assert deleted == ["s2"]
    assert await store.sessions_ended_before(cutoff, limit=10) == ["s0", "s1"]
    for kept in ("s3", "live"):
        assert all((await rows_of(store, kept)).values())


async def test_a_report_saved_after_the_erasure_stores_nothing(store: Store):
    await full_interview(store, "gone")
    await store.delete_sessions(["gone"])
    stored = await store.save_report(
        "gone", status=ReportStatus.ready, at=T0, body={"answers": ["my answer"]}
    )
    assert stored is False
    assert set((await rows_of(store, "gone")).values()) == {0}
    # A live session's report is stored as before.
    await store.insert_session(session_row("s1", ended_at=T0))
    assert await store.save_report("s1", status=ReportStatus.ready, at=T0, body={}) is True
    assert (await store.get_report("s1")) is not None


@pytest.fixture
async def two_stores(postgres_server: PostgresServer) -> AsyncIterator[tuple[Store, Store]]:
    """Two instances' stores (each its own engine and pool) on one PostgreSQL database."""
    url = to_async_database_url(postgres_server.create_database())
    stores = (Store(url), Store(url))
    await stores[0].migrate()
    yield stores
    for store in stores:
        await store.dispose()


async def test_two_instances_erasing_the_same_interviews_at_once(two_stores):
    first, second = two_stores
    ids = [f"s{i:03d}" for i in range(60)]
    for session_id in ids:
        await full_interview(first, session_id, ended_at=T0 - timedelta(days=100))

    # The same erasure from both at once: each interview deleted once, neither fails.
    a, b = await asyncio.gather(first.delete_sessions(ids[:20]), second.delete_sessions(ids[:20]))
    assert sorted(a + b) == ids[:20]

    # Two purges over the same interviews: each skips what the other holds.
    cutoff = T0 - timedelta(days=90)
    rest = ids[20:]
    a, b = await asyncio.gather(
        first.delete_sessions(rest, ended_before=cutoff, skip_locked=True),
        second.delete_sessions(rest, ended_before=cutoff, skip_locked=True),
    )
    assert not set(a) & set(b)
    leftover = await first.sessions_ended_before(cutoff, limit=100)
    assert sorted(a + b + list(leftover)) == rest
    await first.delete_sessions(leftover)
    for session_id in ids:
        assert set((await rows_of(first, session_id)).values()) == {0}


async def test_reports_and_events_racing_an_erasure_leave_nothing_behind(two_stores):
    """One instance writes an interview's report and events while another erases it: whichever
    commits first (both orders happen over the rounds), nothing of the interview is left, and
    no write fails."""
    writer, eraser = two_stores
    bus = event_bus_for(writer.engine)
    assert isinstance(bus, PostgresEventBus)
    await bus.start()
    try:
        for round_ in range(20):
            session_id = f"race{round_}"
            await full_interview(writer, session_id, ended_at=T0)
            for _ in range(5):
                bus.publish(session_id, StatusChanged(status=SessionStatus.ended))
            save = writer.save_report(
                session_id, status=ReportStatus.ready, at=T0, body={"answers": ["x"]}
            )
            saved, deleted = await asyncio.gather(save, eraser.delete_sessions([session_id]))
            assert deleted == [session_id]
            await bus.flush()  # the events are stored (before the erasure) or dropped
            # Events published after the erasure are dropped: no error, nothing stored.
            bus.publish(session_id, StatusChanged(status=SessionStatus.ended))
            await bus.flush()
            assert set((await rows_of(eraser, session_id)).values()) == {0}, (round_, saved)
    finally:
        await bus.stop()
