"""The database: SQLAlchemy models and the queries the domain needs.

Every write commits on its own, so a turn is durable the moment it is recorded: a crash or a
SIGKILL loses nothing that was already answered to a client.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite drops the zone; PostgreSQL keeps it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class SessionRow(Base):
    __tablename__ = "interview_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(200), index=True)
    candidate_name: Mapped[str | None] = mapped_column(String(200))
    plan_id: Mapped[str] = mapped_column(String(100))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    end_reason: Mapped[str | None] = mapped_column(String(32))
    question_index: Mapped[int] = mapped_column(Integer, default=0)
    follow_ups_used: Mapped[int] = mapped_column(Integer, default=0)
    connection_state: Mapped[str] = mapped_column(String(16), default="none")
    # The voice chosen at /start; None speaks with the plan's voice (or TTS_VOICE).
    voice: Mapped[str | None] = mapped_column(String(64))


class TurnRow(Base):
    __tablename__ = "interview_turns"
    __table_args__ = (UniqueConstraint("session_id", "index", name="uq_turn_session_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("interview_sessions.id", ondelete="CASCADE"), index=True
    )
    index: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(8))
    question_index: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # For a spoken interviewer turn: end of the candidate's speech -> first reply audio.
    reply_latency_ms: Mapped[int | None] = mapped_column(Integer)
    # Why this interviewer line is the scripted interviewer's stand-in (the language model
    # failed); None for the interviewer's own lines. Kept with the turn so the status and the
    # report can say so after the interview, a restart, or on another instance.
    degraded_reason: Mapped[str | None] = mapped_column(Text)


class ReportRow(Base):
    __tablename__ = "interview_reports"

    session_id: Mapped[str] = mapped_column(
        ForeignKey("interview_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16))
    body: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Store:
    """Async access to the interview database."""

    def __init__(self, async_url: str) -> None:
        url = make_url(async_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: AsyncEngine = create_async_engine(async_url, pool_pre_ping=True)
        if url.get_backend_name() == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def create_schema(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            await conn.run_sync(_add_missing_columns)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()

    # sessions

    async def insert_session(self, row: SessionRow, *turns: TurnRow) -> None:
        """A new session and its first turns, in one transaction: all or nothing."""
        async with self._sessions() as db, db.begin():
            db.add(row)
            await db.flush()  # the session row must exist before its turns reference it
            db.add_all(turns)

    async def get_session(self, session_id: str) -> SessionRow | None:
        async with self._sessions() as db:
            return await db.get(SessionRow, session_id)

    async def update_session(self, session_id: str, **values: Any) -> None:
        async with self._sessions() as db, db.begin():
            await db.execute(update(SessionRow).where(SessionRow.id == session_id).values(**values))

    async def end_session_if_open(
        self, session_id: str, *, status: str, reason: str, at: datetime
    ) -> bool:
        """End a session unless it already ended; True when this call ended it.

        A conditional UPDATE, so two racing ends (candidate and expiry) record one reason.
        """
        async with self._sessions() as db, db.begin():
            result = await db.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id, SessionRow.ended_at.is_(None))
                .values(status=status, end_reason=reason, ended_at=at, connection_state="closed")
            )
            return result.rowcount == 1

    async def open_sessions_expired_by(self, now: datetime) -> Sequence[str]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(SessionRow.id).where(
                    SessionRow.ended_at.is_(None), SessionRow.expires_at <= now
                )
            )
            return rows.all()

    async def ended_sessions_without_ready_report(self) -> Sequence[str]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(SessionRow.id)
                .outerjoin(ReportRow, ReportRow.session_id == SessionRow.id)
                .where(SessionRow.ended_at.is_not(None))
                .where((ReportRow.session_id.is_(None)) | (ReportRow.status == "pending"))
            )
            return rows.all()

    # turns

    async def add_turn(self, row: TurnRow, **session_values: Any) -> None:
        """Commit a turn, and the session fields it moves, in one transaction."""
        async with self._sessions() as db, db.begin():
            db.add(row)
            if session_values:
                await db.execute(
                    update(SessionRow)
                    .where(SessionRow.id == row.session_id)
                    .values(**session_values)
                )

    async def degraded_reasons(self, session_id: str) -> list[str | None]:
        """Each interviewer line's degraded reason (None when the interviewer's own), in order."""
        async with self._sessions() as db:
            rows = await db.scalars(
                select(TurnRow.degraded_reason)
                .where(TurnRow.session_id == session_id, TurnRow.role == "interviewer")
                .order_by(TurnRow.index)
            )
            return list(rows.all())

    async def update_turn(self, session_id: str, index: int, **values: Any) -> None:
        async with self._sessions() as db, db.begin():
            await db.execute(
                update(TurnRow)
                .where(TurnRow.session_id == session_id, TurnRow.index == index)
                .values(**values)
            )

    async def list_turns(self, session_id: str) -> Sequence[TurnRow]:
        async with self._sessions() as db:
            rows = await db.scalars(
                select(TurnRow).where(TurnRow.session_id == session_id).order_by(TurnRow.index)
            )
            return rows.all()

    async def count_turns(self, session_id: str) -> int:
        async with self._sessions() as db:
            count = await db.scalar(
                select(func.count()).select_from(TurnRow).where(TurnRow.session_id == session_id)
            )
            return int(count or 0)

    # reports

    async def get_report(self, session_id: str) -> ReportRow | None:
        async with self._sessions() as db:
            return await db.get(ReportRow, session_id)

    async def save_report(
        self,
        session_id: str,
        *,
        status: str,
        at: datetime,
        body: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        async with self._sessions() as db, db.begin():
            row = await db.get(ReportRow, session_id)
            if row is None:
                db.add(
                    ReportRow(
                        session_id=session_id, status=status, body=body, error=error, updated_at=at
                    )
                )
            else:
                row.status, row.body, row.error, row.updated_at = status, body, error, at


# Columns added after a release, with their DDL type. create_all makes missing tables but never
# adds a column to a table that exists, so a database made by an older version gets these here.
# Only nullable, additive columns belong in this list: the next change that alters, renames or
# drops a column (or needs a backfill) needs real migrations (Alembic), not a longer list.
ADDED_COLUMNS: dict[str, dict[str, str]] = {
    "interview_sessions": {"voice": "VARCHAR(64)"},
    "interview_turns": {"degraded_reason": "TEXT"},
}


def _add_missing_columns(conn: Connection) -> None:
    inspector = inspect(conn)
    for table, columns in ADDED_COLUMNS.items():
        present = {column["name"] for column in inspector.get_columns(table)}
        for name, ddl_type in columns.items():
            if name not in present:
                add_column(conn, table, name, ddl_type)


def add_column(conn: Connection, table: str, name: str, ddl_type: str) -> None:
    """Add a column that another instance starting at the same moment may have just added."""
    # PostgreSQL's IF NOT EXISTS settles that race. SQLite has no such clause: there the loser
    # gets "duplicate column name", which is the outcome it wanted.
    guard = "IF NOT EXISTS " if conn.dialect.name == "postgresql" else ""
    try:
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {guard}{name} {ddl_type}"))
    except OperationalError:
        if name not in {c["name"] for c in inspect(conn).get_columns(table)}:
            raise


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
