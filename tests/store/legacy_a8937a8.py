"""FROZEN: the tables of release a8937a8, the last made without Alembic. Never change this file.

A verbatim copy of the table definitions and the schema steps of `git show a8937a8:interview/
store.py` (its Store's queries left out). The migration tests make databases with it, as that
release did (create_all, then _add_missing_columns), to prove they upgrade with their data. A
model change belongs in interview/store/tables.py and a new migration, never here.
"""

from __future__ import annotations

from datetime import UTC, datetime
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
    inspect,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
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
