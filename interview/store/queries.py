"""The Store: the async queries the domain needs, on SQLite or PostgreSQL.

Every write commits on its own, so a turn is durable the moment it is recorded: a crash or a
SIGKILL loses nothing that was already answered to a client. SQLAlchemy's sessions are called
`db` here: a "session" in this project is an interview.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Column, delete, event, func, select, text, update
from sqlalchemy.engine import CursorResult, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from interview.domain import (
    ConnectionState,
    EndReason,
    ReportStatus,
    Role,
    SessionStatus,
)
from interview.store.locks import PostgresSessionLocks, SessionLocks
from interview.store.migrate import migrate_to_head
from interview.store.tables import (
    AnswerAudioRow,
    AnswerKeyRow,
    Base,
    ReportRow,
    SessionRow,
    TurnRow,
)


class SessionEnded(Exception):
    """The session ended before this write: nothing was stored."""


class Store:
    """Async access to the interview database."""

    def __init__(self, async_url: str, pool_size: int = 10, max_overflow: int = 20) -> None:
        url = make_url(async_url)
        self.is_postgres = url.get_backend_name() == "postgresql"
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        pool: dict[str, Any] = {}
        if self.is_postgres:
            pool = {"pool_size": pool_size, "max_overflow": max_overflow}
        # hide_parameters: a failing statement's message (logged) would otherwise quote its
        # values, a candidate's answer among them; logs never hold answer text.
        self.engine: AsyncEngine = create_async_engine(
            async_url, pool_pre_ping=True, hide_parameters=True, **pool
        )
        if url.get_backend_name() == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self._db = async_sessionmaker(self.engine, expire_on_commit=False)
        # Every state change of a session is decided holding its lock (interview.sessions).
        self.locks: SessionLocks = (
            PostgresSessionLocks(self.engine, holders=max(1, (pool_size + max_overflow) // 2))
            if self.is_postgres
            else SessionLocks()
        )

    async def migrate(self) -> None:
        """Bring the database to the newest schema (Alembic); a no-op when it is there.

        Safe at every start, from any number of instances at once.
        """
        await migrate_to_head(self.engine)

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()

    # sessions

    async def insert_session(self, row: SessionRow, *turns: TurnRow) -> None:
        """A new session and its first turns, in one transaction: all or nothing."""
        async with self._db() as db, db.begin():
            db.add(row)
            await db.flush()  # the session row must exist before its turns reference it
            db.add_all(turns)

    async def get_session(self, session_id: str) -> SessionRow | None:
        async with self._db() as db:
            return await db.get(SessionRow, session_id)

    async def update_session(self, session_id: str, **values: Any) -> bool:
        """Change an open session; False (nothing changed) once it has ended."""
        async with self._db() as db, db.begin():
            result = await db.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id, SessionRow.ended_at.is_(None))
                .values(**values)
            )
            assert isinstance(result, CursorResult)
            return result.rowcount == 1

    async def end_session_if_open(
        self, session_id: str, *, status: SessionStatus, reason: EndReason, at: datetime
    ) -> bool:
        """End a session unless it already ended; True when this call ended it.

        A conditional UPDATE, so two racing ends (candidate and expiry) record one reason, and
        an ended session is never reopened (every other session write is guarded the same way).
        """
        async with self._db() as db, db.begin():
            result = await db.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id, SessionRow.ended_at.is_(None))
                .values(
                    status=status,
                    end_reason=reason,
                    ended_at=at,
                    connection_state=ConnectionState.closed,
                )
            )
            # A plain UPDATE (no RETURNING) gives the DBAPI cursor's result, with its row count.
            assert isinstance(result, CursorResult)
            return result.rowcount == 1

    async def open_sessions_expired_by(self, now: datetime) -> Sequence[str]:
        async with self._db() as db:
            rows = await db.scalars(
                select(SessionRow.id).where(
                    SessionRow.ended_at.is_(None), SessionRow.expires_at <= now
                )
            )
            return rows.all()

    async def ended_sessions_without_ready_report(self) -> Sequence[str]:
        async with self._db() as db:
            rows = await db.scalars(
                select(SessionRow.id)
                .outerjoin(ReportRow, ReportRow.session_id == SessionRow.id)
                .where(SessionRow.ended_at.is_not(None))
                .where(
                    (ReportRow.session_id.is_(None)) | (ReportRow.status == ReportStatus.pending)
                )
            )
            return rows.all()

    # turns

    async def add_turn(
        self,
        row: TurnRow,
        *,
        answer_key: AnswerKeyRow | None = None,
        settles_key: str | None = None,
        activate_at: datetime | None = None,
        audio: AnswerAudioRow | None = None,
        **session_values: Any,
    ) -> None:
        """Commit a turn, and the session fields it moves, in one transaction; SessionEnded
        (and nothing stored) once the session has ended.

        `answer_key`: the answer's Idempotency-Key, stored with it. `settles_key`: the key
        whose answer this interviewer turn replies to. `activate_at`: a created session becomes
        active (only a created one: an ended session is never reopened). `audio`: the answer's
        kept audio, for the accurate pass.
        """
        async with self._db() as db, db.begin():
            # The guarded UPDATE also takes the session row's lock in PostgreSQL, so an end
            # committing at the same moment comes strictly before or after this turn.
            open_session = (SessionRow.id == row.session_id) & SessionRow.ended_at.is_(None)
            result = await db.execute(
                update(SessionRow)
                .where(open_session)
                .values(**(session_values or {"id": SessionRow.id}))
            )
            assert isinstance(result, CursorResult)
            if result.rowcount != 1:
                raise SessionEnded(row.session_id)
            if activate_at is not None:
                await db.execute(
                    update(SessionRow)
                    .where(open_session, SessionRow.status == SessionStatus.created)
                    .values(status=SessionStatus.active, started_at=activate_at)
                )
            db.add(row)
            if audio is not None:
                db.add(audio)
            if answer_key is not None:
                db.add(answer_key)
            if settles_key is not None:
                await db.execute(
                    update(AnswerKeyRow)
                    .where(
                        AnswerKeyRow.session_id == row.session_id, AnswerKeyRow.key == settles_key
                    )
                    .values(reply_index=row.index)
                )

    async def get_answer_key(self, session_id: str, key: str) -> AnswerKeyRow | None:
        async with self._db() as db:
            return await db.get(AnswerKeyRow, (session_id, key))

    async def activate_session(self, session_id: str, at: datetime) -> bool:
        """created -> active, and only that; True when this call did it."""
        async with self._db() as db, db.begin():
            result = await db.execute(
                update(SessionRow)
                .where(
                    SessionRow.id == session_id,
                    SessionRow.status == SessionStatus.created,
                    SessionRow.ended_at.is_(None),
                )
                .values(status=SessionStatus.active, started_at=at)
            )
            assert isinstance(result, CursorResult)
            return result.rowcount == 1

    async def sessions_awaiting_reply(self, answered_before: datetime) -> Sequence[str]:
        """Open sessions whose latest turn is an answer given before `answered_before`: the
        process that was to reply died first (the sweeper replies for it)."""
        latest = (
            select(func.max(TurnRow.index))
            .where(TurnRow.session_id == SessionRow.id)
            .correlate(SessionRow)
            .scalar_subquery()
        )
        async with self._db() as db:
            rows = await db.scalars(
                select(SessionRow.id)
                .join(TurnRow, TurnRow.session_id == SessionRow.id)
                .where(
                    SessionRow.ended_at.is_(None),
                    TurnRow.index == latest,
                    TurnRow.role == Role.candidate,
                    TurnRow.ended_at < answered_before,
                )
            )
            return rows.all()

    async def degraded_reasons(self, session_id: str) -> list[str | None]:
        """Each interviewer line's degraded reason (None when the interviewer's own), in order."""
        async with self._db() as db:
            rows = await db.scalars(
                select(TurnRow.degraded_reason)
                .where(TurnRow.session_id == session_id, TurnRow.role == Role.interviewer)
                .order_by(TurnRow.index)
            )
            return list(rows.all())

    async def update_turn(self, session_id: str, index: int, **values: Any) -> None:
        async with self._db() as db, db.begin():
            await db.execute(
                update(TurnRow)
                .where(TurnRow.session_id == session_id, TurnRow.index == index)
                .values(**values)
            )

    async def continue_turn(
        self, session_id: str, index: int, audio: AnswerAudioRow | None, **values: Any
    ) -> None:
        """An answer that went on: its new values, and the audio of the stretch that continued
        it (numbered after the answer's other stretches; the answer's word times, of its
        earlier words only, are dropped until the accurate pass has them all), in one
        transaction."""
        async with self._db() as db, db.begin():
            await db.execute(
                update(TurnRow)
                .where(TurnRow.session_id == session_id, TurnRow.index == index)
                .values(**values)
            )
            if audio is not None:
                await db.execute(
                    update(TurnRow)
                    .where(TurnRow.session_id == session_id, TurnRow.index == index)
                    .values(words=None)
                )
                audio.segment = int(
                    await db.scalar(
                        select(func.count())
                        .select_from(AnswerAudioRow)
                        .where(
                            AnswerAudioRow.session_id == session_id,
                            AnswerAudioRow.turn_index == index,
                        )
                    )
                    or 0
                )
                db.add(audio)

    async def list_turns(self, session_id: str) -> Sequence[TurnRow]:
        async with self._db() as db:
            rows = await db.scalars(
                select(TurnRow).where(TurnRow.session_id == session_id).order_by(TurnRow.index)
            )
            return rows.all()

    async def count_turns(self, session_id: str) -> int:
        async with self._db() as db:
            count = await db.scalar(
                select(func.count()).select_from(TurnRow).where(TurnRow.session_id == session_id)
            )
            return int(count or 0)

    # reports

    async def get_report(self, session_id: str) -> ReportRow | None:
        async with self._db() as db:
            return await db.get(ReportRow, session_id)

    async def save_report(
        self,
        session_id: str,
        *,
        status: ReportStatus,
        at: datetime,
        body: dict[str, Any] | None = None,
        error: str | None = None,
        evaluation_due_at: datetime | None = None,
    ) -> bool:
        """Store the report as written; `evaluation_due_at`: when its evaluation, which failed,
        is tried again in the background (with a fresh budget of attempts). False (nothing
        stored) when the session was erased."""
        async with self._db() as db, db.begin():
            # The session's row is share-locked (PostgreSQL): an erasure waits for this report
            # and deletes it, or this report finds the session gone and stores nothing.
            if not await _lock_session_key(db, session_id):
                return False
            row = await db.get(ReportRow, session_id)
            if row is None:
                row = ReportRow(session_id=session_id)
                db.add(row)
            row.status, row.body, row.error, row.updated_at = status, body, error, at
            row.evaluation_attempts, row.evaluation_due_at = 0, evaluation_due_at
        return True

    async def reports_due_for_evaluation(self, now: datetime, limit: int) -> Sequence[str]:
        """Ready reports whose next background evaluation is due, the longest due first."""
        async with self._db() as db:
            rows = await db.scalars(
                select(ReportRow.session_id)
                .where(
                    ReportRow.status == ReportStatus.ready,
                    ReportRow.evaluation_due_at.is_not(None),
                    ReportRow.evaluation_due_at <= now,
                )
                .order_by(ReportRow.evaluation_due_at)
                .limit(limit)
            )
            return rows.all()

    async def update_evaluation(
        self,
        session_id: str,
        *,
        at: datetime,
        attempts: int,
        due_at: datetime | None,
        body: dict[str, Any] | None = None,
        unless_changed_from: ReportRow | None = None,
    ) -> bool:
        """Record a background evaluation's outcome (or an operator's request for one) on a
        ready report: its attempts so far, when the next is due, and its new body if given.
        `unless_changed_from`: only if the attempts and due time are still those of this row as
        read before (an operator's request made meanwhile wins). False when nothing changed."""
        conditions = [ReportRow.session_id == session_id, ReportRow.status == ReportStatus.ready]
        if unless_changed_from is not None:
            seen = unless_changed_from
            conditions.append(ReportRow.evaluation_attempts == seen.evaluation_attempts)
            conditions.append(
                ReportRow.evaluation_due_at.is_(None)
                if seen.evaluation_due_at is None
                else ReportRow.evaluation_due_at == seen.evaluation_due_at
            )
        values: dict[str, Any] = {
            "evaluation_attempts": attempts,
            "evaluation_due_at": due_at,
            "updated_at": at,
        }
        if body is not None:
            values["body"] = body
        async with self._db() as db, db.begin():
            result = await db.execute(update(ReportRow).where(*conditions).values(**values))
            assert isinstance(result, CursorResult)
            return result.rowcount == 1

    # erasure

    async def sessions_ended_before(self, cutoff: datetime, limit: int) -> Sequence[str]:
        """Up to `limit` interviews that ended before `cutoff`, oldest first."""
        async with self._db() as db:
            rows = await db.scalars(
                select(SessionRow.id)
                .where(SessionRow.ended_at < cutoff)
                .order_by(SessionRow.ended_at, SessionRow.id)
                .limit(limit)
            )
            return rows.all()

    async def count_sessions_ended_before(self, cutoff: datetime) -> int:
        async with self._db() as db:
            count = await db.scalar(
                select(func.count()).select_from(SessionRow).where(SessionRow.ended_at < cutoff)
            )
            return int(count or 0)

    async def delete_sessions(
        self,
        session_ids: Collection[str],
        *,
        ended_before: datetime | None = None,
        skip_locked: bool = False,
    ) -> list[str]:
        """Erase interviews: each one's rows in every table that refers to it, then the
        session's own, in one transaction. Returns the ids deleted: an id already gone (another
        instance erased it first) is not an error.

        `ended_before`: only those that ended before it. `skip_locked` (PostgreSQL): leave the
        sessions another transaction holds (a concurrent purge deletes them).
        """
        if not session_ids:
            return []
        query = select(SessionRow.id).where(SessionRow.id.in_(sorted(set(session_ids))))
        if ended_before is not None:
            query = query.where(SessionRow.ended_at < ended_before)
        async with self._db() as db, db.begin():
            # The sessions' rows are locked first, in one order: a write that refers to one
            # (a report, an event) waits, then finds it gone; nothing is left behind. SQLite has
            # one writer at a time anyway.
            locked = list(
                (
                    await db.scalars(
                        query.order_by(SessionRow.id).with_for_update(skip_locked=skip_locked)
                    )
                ).all()
            )
            if not locked:
                return []
            # Explicitly, table by table, rather than trusting ON DELETE CASCADE to be on (it
            # is a per-connection pragma in SQLite).
            for column in SESSION_REFERENCES:
                await db.execute(delete(column.table).where(column.in_(locked)))
            await db.execute(delete(SessionRow).where(SessionRow.id.in_(locked)))
            return locked


def _session_references() -> list[Column[Any]]:
    """Every column that refers to an interview session, dependents first: what erasing one
    deletes (a table added later is covered by its foreign key)."""
    sessions_id = SessionRow.__table__.c.id
    return [
        column
        for table in reversed(Base.metadata.sorted_tables)
        for column in table.columns
        if any(key.column is sessions_id for key in column.foreign_keys)
    ]


SESSION_REFERENCES = _session_references()


async def _lock_session_key(db: AsyncSession, session_id: str) -> bool:
    """Whether the session exists, holding its key (PostgreSQL's FOR KEY SHARE) until the
    transaction ends, so it cannot be deleted meanwhile."""
    found = await db.scalar(
        select(SessionRow.id)
        .where(SessionRow.id == session_id)
        .with_for_update(read=True, key_share=True)
    )
    return found is not None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # Waiting for a lock comes first: switching a new file to WAL takes one, and another
    # process (an instance starting beside this one) may hold it. WAL lets readers run beside
    # the writer; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA busy_timeout=5000")
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _switch_to_wal(cursor: Any, *, attempts: int = 100, pause: float = 0.05) -> None:
    """`PRAGMA journal_mode=WAL`, retried: SQLite answers "database is locked" at once, without
    its busy handler, while another process is switching the same new file (measured: 8 of 40
    two-process starts failed), so busy_timeout alone does not cover it."""
    for attempt in range(attempts):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as error:  # the driver adapter's OperationalError, whatever its class
            if "locked" not in str(error) or attempt == attempts - 1:
                raise
            time.sleep(pause)
