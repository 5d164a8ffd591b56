"""The store against real SQLite and PostgreSQL databases."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Connection, MetaData, Table, insert, inspect
from sqlalchemy.exc import IntegrityError

from interview.config import to_async_database_url
from interview.store import ReportRow, SessionRow, Store, TurnRow

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


def schema_before_voice() -> MetaData:
    """The tables as the release before the session's voice column made them."""
    old = MetaData()
    sessions = SessionRow.__table__
    Table(sessions.name, old, *(c._copy() for c in sessions.columns if c.name != "voice"))
    for table in (TurnRow.__table__, ReportRow.__table__):
        table.to_metadata(old)
    return old


def session_columns(conn: Connection) -> set[str]:
    return {c["name"] for c in inspect(conn).get_columns("interview_sessions")}


async def test_an_older_database_gets_the_voice_column(database_url: str):
    store = Store(to_async_database_url(database_url))
    try:
        old = schema_before_voice()
        async with store.engine.begin() as conn:
            await conn.run_sync(old.create_all)
            assert "voice" not in await conn.run_sync(session_columns)
            row = session("old")
            # By the ORM's attribute names: the "metadata" column is the attribute `meta`.
            values = {
                prop.columns[0].name: getattr(row, prop.key)
                for prop in inspect(SessionRow).column_attrs
                if prop.key != "voice"
            }
            await conn.execute(insert(old.tables["interview_sessions"]).values(values))

        await store.create_schema()
        await store.create_schema()  # idempotent: a restart finds the column and adds nothing
        async with store.engine.connect() as conn:
            assert "voice" in await conn.run_sync(session_columns)

        chosen = session("new")
        chosen.voice = "bf_emma"
        await store.insert_session(chosen)
        loaded_new, loaded_old = await store.get_session("new"), await store.get_session("old")
        assert loaded_new is not None and loaded_new.voice == "bf_emma"
        # The row written before the column existed keeps working, with no voice of its own.
        assert loaded_old is not None and loaded_old.voice is None
        assert loaded_old.meta == {"team": "search", "level": 3}
    finally:
        await store.dispose()
