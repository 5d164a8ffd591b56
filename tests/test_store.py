"""The store against real SQLite and PostgreSQL databases."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Connection, MetaData, Table, insert, inspect
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from interview.config import to_async_database_url
from interview.store import ADDED_COLUMNS, ReportRow, SessionRow, Store, TurnRow, add_column

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store(to_async_database_url(database_url))
    await store.create_schema()
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
    assert await store.end_session_if_open("s1", status="ended", reason="candidate", at=T0)
    assert not await store.end_session_if_open("s1", status="expired", reason="timeout", at=T0)
    loaded = await store.get_session("s1")
    assert loaded is not None and (loaded.status, loaded.end_reason) == ("ended", "candidate")


async def test_expiry_and_report_queries(store: Store):
    await store.insert_session(session("old"))
    fresh = session("fresh")
    fresh.expires_at = T0 + timedelta(days=1)
    await store.insert_session(fresh)
    assert list(await store.open_sessions_expired_by(T0 + timedelta(hours=2))) == ["old"]

    await store.end_session_if_open("old", status="expired", reason="timeout", at=T0)
    assert list(await store.ended_sessions_without_ready_report()) == ["old"]
    await store.save_report("old", status="pending", at=T0)
    assert list(await store.ended_sessions_without_ready_report()) == ["old"]
    await store.save_report("old", status="ready", at=T0, body={"ok": True})
    assert list(await store.ended_sessions_without_ready_report()) == []
    report = await store.get_report("old")
    assert report is not None and report.body == {"ok": True}


async def test_ping(store: Store):
    await store.ping()


def schema_before_added_columns() -> MetaData:
    """The tables as the first release made them: without any of the columns added since."""
    old = MetaData()
    for table in (SessionRow.__table__, TurnRow.__table__, ReportRow.__table__):
        added = ADDED_COLUMNS.get(table.name, {})
        Table(table.name, old, *(c._copy() for c in table.columns if c.name not in added))
    return old


def columns(conn: Connection) -> dict[str, set[str]]:
    found = inspect(conn)
    return {t: {c["name"] for c in found.get_columns(t)} for t in ADDED_COLUMNS}


def old_values(row: Any, mapped: type) -> dict[str, Any]:
    # By the ORM's attribute names: the "metadata" column is the attribute `meta`.
    added = ADDED_COLUMNS.get(mapped.__tablename__, {})
    return {
        prop.columns[0].name: getattr(row, prop.key)
        for prop in inspect(mapped).column_attrs
        if prop.columns[0].name not in added and getattr(row, prop.key) is not None
    }


async def test_an_older_database_gets_the_added_columns(database_url: str):
    store = Store(to_async_database_url(database_url))
    try:
        old = schema_before_added_columns()
        async with store.engine.begin() as conn:
            await conn.run_sync(old.create_all)
            before = await conn.run_sync(columns)
            assert all(not set(added) & before[t] for t, added in ADDED_COLUMNS.items())
            row = session("old")
            await conn.execute(
                insert(old.tables["interview_sessions"]).values(old_values(row, SessionRow))
            )
            line = TurnRow(
                session_id="old", index=0, role="interviewer", kind="question", text="Hi.",
                source="text", question_index=0, started_at=T0, ended_at=T0,
            )  # fmt: skip
            await conn.execute(
                insert(old.tables["interview_turns"]).values(old_values(line, TurnRow))
            )

        await store.create_schema()
        await store.create_schema()  # idempotent: a restart finds the columns and adds nothing
        async with store.engine.connect() as conn:
            after = await conn.run_sync(columns)
        assert all(set(added) <= after[t] for t, added in ADDED_COLUMNS.items())

        chosen = session("new")
        chosen.voice = "bf_emma"
        await store.insert_session(chosen)
        loaded_new, loaded_old = await store.get_session("new"), await store.get_session("old")
        assert loaded_new is not None and loaded_new.voice == "bf_emma"
        # The rows written before the columns existed keep working, with nothing of their own.
        assert loaded_old is not None and loaded_old.voice is None
        assert loaded_old.meta == {"team": "search", "level": 3}
        assert await store.degraded_reasons("old") == [None]
        stand_in = TurnRow(
            session_id="new", index=0, role="interviewer", kind="question", text="Hi.",
            source="text", question_index=0, started_at=T0, ended_at=T0,
            degraded_reason="timed out",
        )  # fmt: skip
        await store.add_turn(stand_in)
        assert await store.degraded_reasons("new") == ["timed out"]
    finally:
        await store.dispose()


async def test_adding_a_column_another_instance_just_added_is_not_an_error(database_url: str):
    # Two instances starting at once both find the column missing; the second ALTER must not
    # stop the second instance.
    store = Store(to_async_database_url(database_url))
    try:
        await store.create_schema()
        async with store.engine.begin() as conn:
            await conn.run_sync(add_column, "interview_turns", "degraded_reason", "TEXT")
            assert "degraded_reason" in (await conn.run_sync(columns))["interview_turns"]
            with pytest.raises(SQLAlchemyError):  # any other failure still surfaces
                await conn.run_sync(add_column, "no_such_table", "x", "TEXT")
    finally:
        await store.dispose()
