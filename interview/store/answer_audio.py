"""The queries of the accurate pass: kept answer audio (one row per stretch), its claims, and
the answer's transcript once every stretch of it is done or given up.

A stretch is claimed with a conditional UPDATE that only succeeds while it is pending and its
lease has lapsed (or was never taken), so two instances never run the same stretch at once and a
dead instance's claim passes to another once its lease ends. Each claim counts as an attempt.
Results are stored only by the instance that holds the claim, and only while the stretch is
still pending (the deadline gives a stretch up whatever is running).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from interview.domain import PassState, Transcription
from interview.store.queries import Store
from interview.store.tables import AnswerAudioRow, SessionRow, TurnRow

_audio = AnswerAudioRow
# The stretch's turn: same session, its index.
_OF_TURN = and_(TurnRow.session_id == _audio.session_id, TurnRow.index == _audio.turn_index)
# Why a turn kept its live text, as stored on the stretch and the turn.
TIMED_OUT = "timed_out"
FAILED = "failed"
AUDIO_LOST = "audio_lost"
# Rounds of candidates a claim looks through before leaving it to the next poll.
CLAIM_ROUNDS = 8


@dataclass(frozen=True)
class Claimed:
    """A stretch this instance now holds the lease of."""

    id: int
    session_id: str
    turn_index: int
    segment: int
    sample_rate: int
    audio: bytes | None
    context: str
    attempts: int  # this one included


@dataclass(frozen=True)
class TurnOf:
    session_id: str
    turn_index: int


def new_stretch(
    *,
    session_id: str,
    turn_index: int,
    segment: int,
    offset_ms: int,
    pcm: bytes,
    sample_rate: int,
    live_text: str,
    context: str,
    now: datetime,
    deadline_seconds: float,
) -> AnswerAudioRow:
    """A pending stretch of answer audio, to store with its answer (in the answer's
    transaction; the answer's turn has transcription = live)."""
    return AnswerAudioRow(
        session_id=session_id,
        turn_index=turn_index,
        segment=segment,
        offset_ms=offset_ms,
        sample_rate=sample_rate,
        audio=pcm,
        live_text=live_text,
        context=context,
        state=PassState.pending,
        attempts=0,
        deadline_at=now + timedelta(seconds=deadline_seconds),
        created_at=now,
    )


class AnswerAudio:
    """The accurate pass's queries, on the Store's database."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._db = store._db  # the store's sessions: one pool, one configuration

    # stored by the sessions

    async def stretches(self, session_id: str) -> Sequence[AnswerAudioRow]:
        async with self._db() as db:
            rows = await db.scalars(
                select(_audio)
                .where(_audio.session_id == session_id)
                .order_by(_audio.turn_index, _audio.segment)
            )
            return rows.all()

    # asked by the report

    async def pending_passes(self, session_id: str) -> int:
        """The session's stretches whose accurate pass is still to come, or whose turn does not
        have its outcome yet: while this is not 0, the report waits."""
        async with self._db() as db:
            count = await db.scalar(
                select(func.count())
                .select_from(_audio)
                .join(TurnRow, _OF_TURN)
                .where(
                    _audio.session_id == session_id,
                    or_(
                        _audio.state == PassState.pending,
                        TurnRow.transcription == Transcription.live,
                    ),
                )
            )
            return int(count or 0)

    async def transcribed(self, session_id: str) -> bool:
        """The session has ended and nothing of it waits for the accurate pass."""
        async with self._db() as db:
            ended = await db.scalar(select(SessionRow.ended_at).where(SessionRow.id == session_id))
        return ended is not None and await self.pending_passes(session_id) == 0

    # the runner

    async def claim(
        self, instance: str, now: datetime, lease: timedelta, attempts: int
    ) -> Claimed | None:
        """The oldest pending stretch that nobody holds (or whose holder's lease lapsed), now
        held by `instance` until now + lease, its attempts counted; None when there is none."""
        free = or_(_audio.claimed_until.is_(None), _audio.claimed_until <= now)
        claimable = and_(
            _audio.state == PassState.pending,
            _audio.deadline_at > now,
            _audio.attempts < attempts,
            free,
        )
        # Losing every candidate to other instances means they made progress: look again,
        # so a free stretch is not left for the next poll.
        for _round in range(CLAIM_ROUNDS):
            async with self._db() as db:
                candidates = (
                    await db.scalars(
                        select(_audio.id)
                        .where(claimable)
                        .order_by(_audio.created_at, _audio.id)
                        .limit(5)
                    )
                ).all()
            if not candidates:
                return None
            for stretch_id in candidates:
                claimed = await self._take(stretch_id, claimable, instance, now + lease)
                if claimed is not None:
                    return claimed
        return None

    async def _take(
        self, stretch_id: int, claimable: Any, instance: str, until: datetime
    ) -> Claimed | None:
        """The stretch, now held by `instance`; None when another instance took it first."""
        async with self._db() as db, db.begin():
            result = await db.execute(
                update(_audio)
                .where(_audio.id == stretch_id, claimable)
                .values(claimed_by=instance, claimed_until=until, attempts=_audio.attempts + 1)
            )
            assert isinstance(result, CursorResult)
            if result.rowcount != 1:
                return None
            row = await db.get(_audio, stretch_id)
            assert row is not None
            return Claimed(
                id=row.id,
                session_id=row.session_id,
                turn_index=row.turn_index,
                segment=row.segment,
                sample_rate=row.sample_rate,
                audio=row.audio,
                context=row.context,
                attempts=row.attempts,
            )

    async def finish(
        self, stretch_id: int, instance: str, text: str, words: list[list[Any]]
    ) -> bool:
        """Store the pass's outcome and drop the audio, if `instance` still holds the stretch
        and it is still pending; True when stored."""
        return await self._update_held(
            stretch_id,
            instance,
            state=PassState.done,
            accurate_text=text,
            words=words,
            audio=None,
            claimed_until=None,
            error=None,
        )

    async def fail(self, stretch_id: int, instance: str, error: str, *, final: bool) -> bool:
        """A failed attempt: given up (its audio dropped) when `final`, else released for the
        next attempt."""
        if final:
            values: dict[str, Any] = {
                "state": PassState.failed,
                "error": error,
                "audio": None,
                "claimed_until": None,
            }
        else:
            values = {"claimed_by": None, "claimed_until": None}
        return await self._update_held(stretch_id, instance, **values)

    async def release(self, stretch_id: int, instance: str) -> bool:
        """Hand a stretch back without counting the attempt (this instance is stopping)."""
        return await self._update_held(
            stretch_id,
            instance,
            claimed_by=None,
            claimed_until=None,
            attempts=_audio.attempts - 1,
        )

    async def _update_held(self, stretch_id: int, instance: str, **values: Any) -> bool:
        async with self._db() as db, db.begin():
            result = await db.execute(
                update(_audio)
                .where(
                    _audio.id == stretch_id,
                    _audio.state == PassState.pending,
                    _audio.claimed_by == instance,
                )
                .values(**values)
            )
            assert isinstance(result, CursorResult)
            return result.rowcount == 1

    async def give_up_overdue(self, now: datetime, attempts: int) -> list[TurnOf]:
        """Give up the pending stretches past their deadline (timed_out), and those whose
        attempts are spent and whose last holder's lease lapsed (failed: it died mid-pass).
        Their audio is dropped. Returns their turns."""
        lapsed = or_(_audio.claimed_until.is_(None), _audio.claimed_until <= now)
        reasons = (
            (_audio.deadline_at <= now, TIMED_OUT),
            (and_(_audio.attempts >= attempts, lapsed), FAILED),
        )
        given_up: list[TurnOf] = []
        for condition, reason in reasons:
            due = and_(_audio.state == PassState.pending, condition)
            async with self._db() as db:
                rows = (
                    await db.execute(
                        select(_audio.id, _audio.session_id, _audio.turn_index).where(due)
                    )
                ).all()
            for stretch_id, session_id, turn_index in rows:
                async with self._db() as db, db.begin():
                    result = await db.execute(
                        update(_audio)
                        .where(_audio.id == stretch_id, due)
                        .values(
                            state=PassState.failed,
                            error=reason,
                            audio=None,
                            claimed_until=None,
                        )
                    )
                    assert isinstance(result, CursorResult)
                    if result.rowcount == 1:
                        given_up.append(TurnOf(session_id, turn_index))
        return given_up

    async def turns_to_finalize(self, limit: int = 100) -> list[TurnOf]:
        """Turns still waiting (transcription = live) although none of their stretches is
        pending: what an instance that stopped between a pass and its turn left behind."""
        pending = (
            select(_audio.id)
            .where(
                _audio.session_id == TurnRow.session_id,
                _audio.turn_index == TurnRow.index,
                _audio.state == PassState.pending,
            )
            .correlate(TurnRow)
        )
        async with self._db() as db:
            rows = (
                await db.execute(
                    select(TurnRow.session_id, TurnRow.index)
                    .join(_audio, _OF_TURN)
                    .where(TurnRow.transcription == Transcription.live, ~exists(pending))
                    .distinct()
                    .limit(limit)
                )
            ).all()
        return [TurnOf(session_id, index) for session_id, index in rows]

    async def finalize_turn(self, session_id: str, turn_index: int) -> TurnRow | None:
        """Once every stretch of the answer is done or given up: its text from the accurate
        pass (each given-up stretch keeps its live text), the live text as its draft, which
        pass it comes from, and the word times from the turn's start. The caller holds the
        session's lock. The turn as updated, or None (a stretch still pending, the turn already
        final or erased)."""
        async with self._db() as db, db.begin():
            stretches = (
                await db.scalars(
                    select(_audio)
                    .where(_audio.session_id == session_id, _audio.turn_index == turn_index)
                    .order_by(_audio.segment)
                )
            ).all()
            if not stretches or any(s.state == PassState.pending for s in stretches):
                return None
            values = _final_values(stretches)
            result = await db.execute(
                update(TurnRow)
                .where(
                    TurnRow.session_id == session_id,
                    TurnRow.index == turn_index,
                    TurnRow.transcription == Transcription.live,
                )
                .values(**values)
            )
            assert isinstance(result, CursorResult)
            if result.rowcount != 1:
                return None
            return await _turn(db, session_id, turn_index)


def _final_values(stretches: Sequence[AnswerAudioRow]) -> dict[str, Any]:
    done = all(s.state == PassState.done for s in stretches)
    texts = [
        (s.accurate_text or "") if s.state == PassState.done else s.live_text for s in stretches
    ]
    words: list[list[Any]] | None = None
    if done:
        words = [
            [word, round(start + s.offset_ms / 1000, 3), round(end + s.offset_ms / 1000, 3)]
            for s in stretches
            for word, start, end in s.words or []
        ]
    note = next((s.error or FAILED for s in stretches if s.state == PassState.failed), None)
    return {
        "text": " ".join(t for t in texts if t),
        "draft_text": " ".join(s.live_text for s in stretches if s.live_text),
        "transcription": Transcription.accurate if done else Transcription.live_only,
        "transcription_note": note,
        "words": words,
    }


async def _turn(db: AsyncSession, session_id: str, index: int) -> TurnRow | None:
    turn: TurnRow | None = await db.scalar(
        select(TurnRow).where(TurnRow.session_id == session_id, TurnRow.index == index)
    )
    return turn
