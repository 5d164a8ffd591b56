"""The database's tables as SQLAlchemy ORM rows: sessions, turns and reports, with typed enums."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy import Enum as EnumType
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from interview.domain import (
    ConnectionState,
    EndReason,
    Interruption,
    PassState,
    ReportStatus,
    Role,
    SessionStatus,
    Transcription,
    TurnKind,
    TurnSource,
)


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


def enum_column(enum: type[Enum], length: int) -> EnumType:
    """An enum stored as its values in a plain VARCHAR(length): no native type, no CHECK.

    The columns were VARCHARs before they were enums, so the DDL stays the same; a value the
    enum does not know is refused on write and on read instead of passing through as a string.
    """
    return EnumType(
        enum,
        native_enum=False,
        create_constraint=False,
        values_callable=lambda members: [member.value for member in members],
        length=length,
        validate_strings=True,
    )


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
    status: Mapped[SessionStatus] = mapped_column(enum_column(SessionStatus, 16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Indexed for the retention sweep, which purges interviews ended DATA_RETENTION_DAYS ago.
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    end_reason: Mapped[EndReason | None] = mapped_column(enum_column(EndReason, 32))
    question_index: Mapped[int] = mapped_column(Integer, default=0)
    follow_ups_used: Mapped[int] = mapped_column(Integer, default=0)
    connection_state: Mapped[ConnectionState] = mapped_column(
        enum_column(ConnectionState, 16), default=ConnectionState.none
    )
    # The voice chosen at /start; None speaks with the plan's voice (or TTS_VOICE).
    voice: Mapped[str | None] = mapped_column(String(64))
    # The instance (interview_instances.id) that holds the session's peer connection, if any:
    # its media is pinned there; every other instance relays to it what it must act on.
    owner_instance: Mapped[str | None] = mapped_column(String(64))


class TurnRow(Base):
    __tablename__ = "interview_turns"
    __table_args__ = (UniqueConstraint("session_id", "index", name="uq_turn_session_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("interview_sessions.id", ondelete="CASCADE"), index=True
    )
    index: Mapped[int] = mapped_column(Integer)
    role: Mapped[Role] = mapped_column(enum_column(Role, 16))
    kind: Mapped[TurnKind] = mapped_column(enum_column(TurnKind, 16))
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[TurnSource] = mapped_column(enum_column(TurnSource, 8))
    question_index: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # For a spoken interviewer turn: end of the candidate's speech -> first reply audio.
    reply_latency_ms: Mapped[int | None] = mapped_column(Integer)
    # Why this interviewer line is the scripted interviewer's stand-in (the language model
    # failed); None for the interviewer's own lines. Kept with the turn so the status and the
    # report can say so after the interview, a restart, or on another instance.
    degraded_reason: Mapped[str | None] = mapped_column(Text)
    # Set when the line was cut (its `text` is then what was played, `planned_text` the whole
    # line); None for a line heard whole, and for answers.
    interruption: Mapped[Interruption | None] = mapped_column(enum_column(Interruption, 16))
    planned_text: Mapped[str | None] = mapped_column(Text)
    # For a candidate turn: which pass its text comes from (None for the interviewer's lines,
    # and for answers stored before the accurate pass existed).
    transcription: Mapped[Transcription | None] = mapped_column(enum_column(Transcription, 16))
    # Why a live_only turn kept its live text (timed_out, failed, audio_lost, not_configured).
    transcription_note: Mapped[str | None] = mapped_column(String(64))
    # The live pass's text, once the accurate pass has replaced it.
    draft_text: Mapped[str | None] = mapped_column(Text)
    # The accurate pass's words: [[word, start, end], ...], seconds from the turn's started_at;
    # "".join of the words of each stretch is that stretch's text.
    words: Mapped[list[Any] | None] = mapped_column(JSON)


# A BIGINT on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class InstanceRow(Base):
    """A running server process, and its heartbeat: an owner whose heartbeat is stale is dead."""

    __tablename__ = "interview_instances"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    draining: Mapped[bool] = mapped_column(Boolean, default=False)


class AnswerKeyRow(Base):
    """An answer request's Idempotency-Key, and what it stored: a retry returns that outcome."""

    __tablename__ = "interview_answer_keys"

    session_id: Mapped[str] = mapped_column(
        ForeignKey("interview_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # sha256 of the request's text: the same key with other words is a client error.
    request_hash: Mapped[str] = mapped_column(String(64))
    answer_index: Mapped[int] = mapped_column(Integer)
    # None until the interviewer's reply is committed (a crash in between is repaired).
    reply_index: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EventRow(Base):
    """A published live event (PostgreSQL only): every instance's subscribers read it."""

    __tablename__ = "interview_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("interview_sessions.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(32))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RelayRow(Base):
    """Something the owner of a session's peer connection must do, asked by another instance
    (an ICE candidate, a takeover); the owner writes the result."""

    __tablename__ = "interview_relay"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("interview_sessions.id", ondelete="CASCADE"), index=True
    )
    instance: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AnswerAudioRow(Base):
    """One stretch of a spoken answer's audio, kept until the accurate pass has transcribed it
    (an answer continued after a withdrawn reply has two or more). The audio is dropped as soon
    as the stretch is done or given up, and an erased session takes its rows with it."""

    __tablename__ = "interview_answer_audio"
    __table_args__ = (
        UniqueConstraint("session_id", "turn_index", "segment", name="uq_answer_audio_segment"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(
        ForeignKey("interview_sessions.id", ondelete="CASCADE"), index=True
    )
    turn_index: Mapped[int] = mapped_column(Integer)
    segment: Mapped[int] = mapped_column(Integer)
    # Where the stretch starts, in ms after the turn's started_at (0 for the first).
    offset_ms: Mapped[int] = mapped_column(Integer)
    sample_rate: Mapped[int] = mapped_column(Integer)
    # 16-bit little-endian mono PCM; None once the stretch is done or given up.
    audio: Mapped[bytes | None] = mapped_column(LargeBinary)
    live_text: Mapped[str] = mapped_column(Text)
    # What the interview already knows, given to the accurate pass (the question, the plan's
    # vocabulary): never the candidate's words.
    context: Mapped[str] = mapped_column(Text)
    state: Mapped[PassState] = mapped_column(enum_column(PassState, 16), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The instance running the pass now, until when (a lease: a dead instance's claim lapses).
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # After this the live text stands (flagged): the report never waits longer for it.
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    accurate_text: Mapped[str | None] = mapped_column(Text)
    words: Mapped[list[Any] | None] = mapped_column(JSON)
    # Why the stretch was given up (timed_out, failed, ...): a reason, never the audio's words.
    error: Mapped[str | None] = mapped_column(String(64))


class ReportRow(Base):
    __tablename__ = "interview_reports"

    session_id: Mapped[str] = mapped_column(
        ForeignKey("interview_sessions.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[ReportStatus] = mapped_column(enum_column(ReportStatus, 16))
    body: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # A ready report whose evaluation failed is evaluated again in the background: how many
    # times that was tried, and when the next try is due (None: none is due).
    evaluation_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    evaluation_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)


class RateLimitRow(Base):
    """A fixed-window request counter (the `limits` library's storage on PostgreSQL), shared
    by every instance so a client's limit holds whichever instance it reaches."""

    __tablename__ = "interview_rate_limits"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
