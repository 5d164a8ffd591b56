"""The migrations against real SQLite and PostgreSQL databases: old databases upgrade with
their data, the migrated schema is the ORM's, and instances starting together take turns."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Connection, Table, event, insert, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

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
from interview.store import SessionRow, Store, TurnRow, migrate
from interview.store.tables import Base
from tests.store import legacy_a8937a8 as legacy

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
# The columns a8937a8 added to databases made before them: an "older" database lacks them.
LATER_COLUMNS = {"voice", "degraded_reason"}


def session_values(session_id: str, **values: Any) -> dict[str, Any]:
    row = dict(
        id=session_id,
        token_hash=session_id[-1] * 64,
        user_id="user-1",
        candidate_name="Ada Lovelace",
        plan_id="backend-engineer-screen",
        metadata={"team": "search", "level": 3, "notes": ["naïve", "日本"], "none": None},
        status="created",
        created_at=T0,
        started_at=None,
        ended_at=None,
        expires_at=T0 + timedelta(hours=1),
        end_reason=None,
        question_index=0,
        follow_ups_used=0,
        connection_state="none",
        voice=None,
    )
    row.update(values)
    return row


def turn_values(session_id: str, index: int, role: str, kind: str, **values: Any) -> dict:
    row = dict(
        session_id=session_id,
        index=index,
        role=role,
        kind=kind,
        text=f"{session_id} line {index}",
        source="text",
        question_index=index // 2,
        started_at=T0 + timedelta(seconds=10 * index),
        ended_at=T0 + timedelta(seconds=10 * index + 5),
        reply_latency_ms=None,
        degraded_reason=None,
    )
    row.update(values)
    return row


# What a8937a8 wrote: sessions in each state, turns of every kind, reports of every status.
ENDED = T0 + timedelta(minutes=20)
DATA: dict[str, list[dict[str, Any]]] = {
    "interview_sessions": [
        session_values("s-open", voice="bf_emma", candidate_name=None),
        session_values(
            "s-done",
            status="ended",
            started_at=T0,
            ended_at=ENDED,
            end_reason="plan_finished",
            question_index=2,
            follow_ups_used=1,
            connection_state="closed",
        ),
        session_values(
            "s-left",
            status="ended",
            started_at=T0,
            ended_at=ENDED,
            end_reason="candidate",
            connection_state="disconnected",
            metadata={},
        ),
        session_values(
            "s-late",
            status="expired",
            ended_at=ENDED,
            end_reason="timeout",
            connection_state="closed",
        ),
    ],
    "interview_turns": [
        turn_values("s-open", 0, "interviewer", "question"),
        turn_values("s-done", 0, "interviewer", "question"),
        turn_values("s-done", 1, "candidate", "answer", source="voice"),
        turn_values(
            "s-done",
            2,
            "interviewer",
            "follow_up",
            source="voice",
            reply_latency_ms=840,
            degraded_reason="the language model timed out",
        ),
        turn_values("s-done", 3, "candidate", "answer", text="Multi\nline, 'quoted' ✓"),
        turn_values("s-done", 4, "interviewer", "close", reply_latency_ms=0),
        turn_values("s-left", 0, "interviewer", "question"),
    ],
    "interview_reports": [
        dict(
            session_id="s-done",
            status="ready",
            error=None,
            updated_at=ENDED,
            body={"summary": "Clear answers.", "scores": [{"q": 0, "score": 4.5}], "x": None},
        ),
        dict(session_id="s-left", status="pending", body=None, error=None, updated_at=ENDED),
        dict(
            session_id="s-late",
            status="failed",
            body=None,
            updated_at=ENDED,
            error="evaluation failed after 3 attempts: timeout",
        ),
    ],
}


def columns_of(table: Table, *, older: bool) -> list[Column[Any]]:
    return [c for c in table.columns if not (older and c.name in LATER_COLUMNS)]


async def make_legacy_database(url: str, *, older: bool = False) -> dict[str, list[dict[str, Any]]]:
    """A database as a8937a8 made it (create_all, then its added columns), filled with DATA;
    returns every row as read back with a8937a8's tables, before any migration.

    `older`: as a version before those columns made it. They were the last columns of their
    tables and carry no index or constraint, so that is a8937a8's schema with them dropped.
    """
    engine = create_async_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", legacy._sqlite_pragmas)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(legacy.Base.metadata.create_all)
            await conn.run_sync(legacy._add_missing_columns)
            for table_name, added in legacy.ADDED_COLUMNS.items():
                for name in added if older else ():
                    await conn.execute(text(f"ALTER TABLE {table_name} DROP COLUMN {name}"))
            for table in legacy.Base.metadata.sorted_tables:
                names = {c.name for c in columns_of(table, older=older)}
                rows = [{k: v for k, v in row.items() if k in names} for row in DATA[table.name]]
                await conn.execute(insert(table), rows)
        return await read_rows(engine, older=older)
    finally:
        await engine.dispose()


async def read_rows(engine: AsyncEngine, *, older: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Every row, read with a8937a8's tables (and types), in primary key order."""
    async with engine.connect() as conn:
        return {
            table.name: [
                dict(row._mapping)
                for row in await conn.execute(
                    select(*columns_of(table, older=older)).order_by(*table.primary_key)
                )
            ]
            for table in legacy.Base.metadata.sorted_tables
        }


def without_turn_ids(rows: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The rows without the turns' ids, which the database numbers."""
    return {
        table: [
            {k: v for k, v in row.items() if (table, k) != ("interview_turns", "id")}
            for row in found
        ]
        for table, found in rows.items()
    }


def expected() -> dict[str, list[dict[str, Any]]]:
    """DATA as read_rows returns it: by primary key (turns: by id, the order they were written)."""
    result = {}
    for table in legacy.Base.metadata.sorted_tables:
        names = [c.name for c in table.columns if c.name != "id" or table.name != "interview_turns"]
        rows = DATA[table.name]
        if table.name != "interview_turns":
            rows = sorted(rows, key=itemgetter(table.primary_key.columns[0].name))
        result[table.name] = [{name: row[name] for name in names} for row in rows]
    return result


def revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def differences(conn: Connection) -> list[Any]:
    """What autogenerate would write: the database against the ORM's tables."""
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return compare_metadata(context, Base.metadata)


def schema(conn: Connection) -> dict[str, dict[str, Any]]:
    """Everything reflection tells about our tables, comparable across two databases."""
    found = inspect(conn)
    tables = sorted(set(found.get_table_names()) - {"alembic_version"})
    return {
        table: {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                for c in found.get_columns(table)
            ],
            "primary_key": found.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": sorted(
                (
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    fk["options"].get("ondelete"),
                )
                for fk in found.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in found.get_indexes(table)
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"])) for u in found.get_unique_constraints(table)
            ),
        }
        for table in tables
    }


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store(to_async_database_url(database_url))
    yield store
    await store.dispose()


async def test_the_baseline_makes_a8937a8s_schema(store: Store):
    async with store.engine.begin() as conn:
        await conn.run_sync(legacy.Base.metadata.create_all)
        theirs = await conn.run_sync(schema)
        await conn.run_sync(legacy.Base.metadata.drop_all)
    async with store.engine.begin() as conn:
        # The baseline alone: later revisions change the schema on purpose.
        await conn.run_sync(
            lambda sync: command.upgrade(migrate.alembic_config(sync), migrate.BASELINE)
        )
    async with store.engine.connect() as conn:
        ours = await conn.run_sync(schema)
    assert ours == theirs
    # What matters most is there (the comparison is not of two empty things).
    turns = ours["interview_turns"]
    assert ("uq_turn_session_index", ("session_id", "index")) in turns["unique"]
    assert turns["foreign_keys"] == [(("session_id",), "interview_sessions", ("id",), "CASCADE")]
    assert ("ix_interview_sessions_expires_at", ("expires_at",), False) in ours[
        "interview_sessions"
    ]["indexes"]
    assert ours["interview_reports"]["foreign_keys"][0][-1] == "CASCADE"


async def test_a_fresh_database_migrates_to_exactly_the_orm_tables(store: Store):
    await store.migrate()
    async with store.engine.connect() as conn:
        assert await conn.run_sync(revision) == migrate.head()
        # A model change without its migration shows up here.
        assert await conn.run_sync(differences) == []


async def test_an_a8937a8_database_upgrades_with_its_data(store: Store, database_url: str):
    before = await make_legacy_database(to_async_database_url(database_url))
    assert without_turn_ids(before) == expected()  # the fixture wrote it all

    await store.migrate()

    async with store.engine.connect() as conn:
        assert await conn.run_sync(revision) == migrate.head()
        assert await conn.run_sync(differences) == []
    # Every row and value, read as a8937a8 read them (ids included).
    assert await read_rows(store.engine) == before

    # The new Store reads them, typed.
    done = await store.get_session("s-done")
    assert done is not None
    assert (done.status, done.end_reason, done.connection_state) == (
        SessionStatus.ended,
        EndReason.plan_finished,
        ConnectionState.closed,
    )
    assert type(done.status) is SessionStatus and type(done.end_reason) is EndReason
    assert done.meta == {"team": "search", "level": 3, "notes": ["naïve", "日本"], "none": None}
    assert (done.started_at, done.ended_at, done.question_index) == (T0, ENDED, 2)
    opened = await store.get_session("s-open")
    assert opened is not None and (opened.voice, opened.end_reason) == ("bf_emma", None)
    assert opened.status is SessionStatus.created and opened.candidate_name is None

    turns = await store.list_turns("s-done")
    assert [(t.role, t.kind, t.source) for t in turns] == [
        (Role.interviewer, TurnKind.question, TurnSource.text),
        (Role.candidate, TurnKind.answer, TurnSource.voice),
        (Role.interviewer, TurnKind.follow_up, TurnSource.voice),
        (Role.candidate, TurnKind.answer, TurnSource.text),
        (Role.interviewer, TurnKind.close, TurnSource.text),
    ]
    assert all(type(t.kind) is TurnKind and type(t.role) is Role for t in turns)
    assert turns[3].text == "Multi\nline, 'quoted' ✓" and turns[2].reply_latency_ms == 840
    assert await store.degraded_reasons("s-done") == [
        None,
        "the language model timed out",
        None,
    ]

    ready, pending, failed = [await store.get_report(s) for s in ("s-done", "s-left", "s-late")]
    assert ready is not None and ready.status is ReportStatus.ready
    assert ready.body == {
        "summary": "Clear answers.",
        "scores": [{"q": 0, "score": 4.5}],
        "x": None,
    }
    assert pending is not None and (pending.status, pending.body) == (ReportStatus.pending, None)
    assert failed is not None and failed.status is ReportStatus.failed
    assert failed.error == "evaluation failed after 3 attempts: timeout"
    assert list(await store.ended_sessions_without_ready_report()) == ["s-left"]

    # And it takes new writes: the turn ids continue (PostgreSQL's sequence came along).
    await store.add_turn(
        TurnRow(**turn_values("s-open", 1, "candidate", "answer")), status=SessionStatus.active
    )
    assert [t.index for t in await store.list_turns("s-open")] == [0, 1]
    new_ids = [t.id for t in await store.list_turns("s-open")]
    assert new_ids[1] > max(row["id"] for row in before["interview_turns"])


async def test_a_database_older_than_a8937a8s_columns_upgrades(store: Store, database_url: str):
    before = await make_legacy_database(to_async_database_url(database_url), older=True)
    async with store.engine.connect() as conn:
        present = await conn.run_sync(schema)
    assert "voice" not in {c[0] for c in present["interview_sessions"]["columns"]}
    assert "degraded_reason" not in {c[0] for c in present["interview_turns"]["columns"]}

    await store.migrate()

    async with store.engine.connect() as conn:
        assert await conn.run_sync(revision) == migrate.head()
        assert await conn.run_sync(differences) == []
    assert await read_rows(store.engine, older=True) == before
    after = await read_rows(store.engine)
    assert {row["voice"] for row in after["interview_sessions"]} == {None}
    assert {row["degraded_reason"] for row in after["interview_turns"]} == {None}

    opened = await store.get_session("s-open")
    assert opened is not None and opened.voice is None and opened.status is SessionStatus.created
    assert await store.degraded_reasons("s-done") == [None, None, None]
    # The added columns take values now.
    await store.update_session("s-open", voice="am_adam")
    stand_in = turn_values("s-open", 1, "interviewer", "follow_up", degraded_reason="timed out")
    await store.add_turn(TurnRow(**stand_in))
    reloaded = await store.get_session("s-open")
    assert reloaded is not None and reloaded.voice == "am_adam"
    assert await store.degraded_reasons("s-open") == [None, "timed out"]


async def test_migrating_again_changes_nothing(store: Store):
    await store.migrate()
    values = session_values("s1")
    values["meta"] = values.pop("metadata")  # the ORM's name for the column
    await store.insert_session(SessionRow(**values))
    statements: list[str] = []

    def record(_conn, _cursor, statement: str, *_args) -> None:
        statements.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", record)
    try:
        await store.migrate()
    finally:
        event.remove(store.engine.sync_engine, "before_cursor_execute", record)
    assert statements  # it did look
    writes = ("CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE")
    assert [s for s in statements if s.lstrip().upper().startswith(writes)] == []
    assert await store.count_turns("s1") == 0 and await store.get_session("s1") is not None


async def test_instances_migrating_at_once_both_succeed(database_url: str):
    url = to_async_database_url(database_url)
    first, second = Store(url), Store(url)
    try:
        await asyncio.gather(first.migrate(), second.migrate())
        async with second.engine.connect() as conn:
            assert await conn.run_sync(revision) == migrate.head()
            assert await conn.run_sync(differences) == []
    finally:
        await first.dispose()
        await second.dispose()


async def test_a_migration_waits_for_the_one_under_way(database_url: str):
    url = to_async_database_url(database_url)
    holder, store = Store(url), Store(url)
    try:
        async with holder.engine.connect() as conn:
            # Another instance is migrating: it holds the lock a migration takes.
            if conn.dialect.name == "postgresql":
                lock = text("SELECT pg_advisory_lock(:key)")
                await conn.execute(lock, {"key": migrate.ADVISORY_LOCK_KEY})
            else:
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            waiting = asyncio.create_task(store.migrate())
            await asyncio.sleep(1.0)
            assert not waiting.done()
            if conn.dialect.name == "postgresql":
                unlock = text("SELECT pg_advisory_unlock(:key)")
                await conn.execute(unlock, {"key": migrate.ADVISORY_LOCK_KEY})
            await conn.commit()
            await asyncio.wait_for(waiting, timeout=10)
        async with store.engine.connect() as conn:
            assert await conn.run_sync(revision) == migrate.head()
    finally:
        await holder.dispose()
        await store.dispose()


RACER = """
import asyncio, sys
from interview.store import Store

async def main() -> None:
    store = Store(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()  # the starting gun: both processes migrate at the same moment
    await store.migrate()
    await store.dispose()

asyncio.run(main())
"""


def test_two_processes_migrating_one_sqlite_file_both_succeed(tmp_path: Path):
    url = f"sqlite+aiosqlite:///{tmp_path}/spool.db"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, url],
            cwd=REPO,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        for racer in racers:
            assert racer.stdout is not None and racer.stdout.readline().strip() == "ready"
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        outcomes = [racer.communicate(timeout=60) for racer in racers]
    finally:
        for racer in racers:
            racer.kill()
    assert [racer.returncode for racer in racers] == [0, 0], outcomes

    async def check() -> None:
        store = Store(url)
        try:
            async with store.engine.connect() as conn:
                assert await conn.run_sync(revision) == migrate.head()
                assert await conn.run_sync(differences) == []
        finally:
            await store.dispose()

    asyncio.run(check())


async def test_a_database_with_a_stray_sessions_table_is_not_adopted(store: Store):
    async with store.engine.begin() as conn:
        await conn.run_sync(legacy.Base.metadata.tables["interview_sessions"].create)
    with pytest.raises(RuntimeError, match="interview_turns, interview_reports"):
        await store.migrate()
    async with store.engine.connect() as conn:
        # Nothing was stamped: the database is as it was.
        assert not await conn.run_sync(lambda c: inspect(c).has_table("alembic_version"))


def test_a_new_revision_is_numbered_after_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migrate, "MIGRATIONS", scripts)
    head = migrate.head()
    assert head is not None
    following = f"{int(head) + 1:04d}"
    written = migrate.new_revision("nothing changed yet")
    assert written == scripts / "versions" / f"{following}_nothing_changed_yet.py"
    source = written.read_text()
    assert f'revision: str = "{following}"' in source
    assert f'down_revision: str | Sequence[str] | None = "{head}"' in source
    # The ORM and head agree, so autogenerate found nothing to do.
    assert "def upgrade() -> None:\n    # ### commands auto generated by Alembic" in source
    assert "    pass\n" in source and "op." not in source
    # Written lint-clean and formatted, as `make lint` wants every file.
    ruff = [sys.executable, "-m", "ruff"]
    settings = ["--no-cache", "--config", str(REPO / "pyproject.toml"), str(written)]
    for check in (["check"], ["format", "--check"]):
        lint = subprocess.run([*ruff, *check, *settings], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout


REBUILD_SESSIONS = '''"""Rebuild the sessions table, as SQLite's batch mode does to alter one."""

from alembic import op

revision = "9001"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("interview_sessions", recreate="always"):
        pass


def downgrade() -> None:
    pass
'''


async def test_a_sqlite_table_rebuild_keeps_the_rows_pointing_at_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Rebuilding drops the old table: with foreign keys on, that DROP would delete every turn
    # and report through ON DELETE CASCADE.
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    rebuild = REBUILD_SESSIONS.replace("{head}", str(migrate.head()))
    (scripts / "versions" / "9001_rebuild_sessions.py").write_text(rebuild)
    monkeypatch.setattr(migrate, "MIGRATIONS", scripts)
    url = f"sqlite+aiosqlite:///{tmp_path}/spool.db"
    before = await make_legacy_database(url)
    store = Store(url)
    try:
        await store.migrate()
        async with store.engine.connect() as conn:
            assert await conn.run_sync(revision) == "9001"
        assert await read_rows(store.engine) == before
        async with store.engine.connect() as conn:
            # And the Store's connections enforce foreign keys again.
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
    finally:
        await store.dispose()
