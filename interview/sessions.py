"""The life of an interview session: start, answer, connect, end and expire, one decision at a
time per session on every instance (the database holds the lock: interview.store.locks).
Independent of HTTP: the API maps the exceptions below."""

from __future__ import annotations

import hashlib
import secrets
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import structlog
from sqlalchemy.exc import SQLAlchemyError

from interview.access import SessionNotFound, new_token
from interview.config import Settings
from interview.domain import (
    OPEN_STATUSES,
    ConnectionState,
    EndReason,
    Interruption,
    Role,
    SessionStatus,
    Transcription,
    TurnKind,
    TurnSource,
)
from interview.events import (
    ConnectionChanged,
    EventBus,
    InterviewerModeChanged,
    StatusChanged,
    TurnCommitted,
)
from interview.interviewer import (
    Interviewer,
    InterviewerReply,
    InterviewState,
    PastTurn,
    TextSink,
)
from interview.plans import InterviewPlan, PlanCatalog
from interview.speech.stt.accurate import accurate_context
from interview.store import SessionRow, Store, TurnRow
from interview.store.answer_audio import new_stretch
from interview.store.queries import SessionEnded
from interview.store.tables import AnswerAudioRow, AnswerKeyRow

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class VoiceCatalog(Protocol):
    """The voices a session may choose (interview.speech.stack.SpeechStack)."""

    def check_voice(self, voice: str) -> None:
        """Raise interview.speech.errors.UnknownVoice unless `voice` may be chosen."""
        ...


class SessionClosed(Exception):
    def __init__(self, status: SessionStatus) -> None:
        super().__init__(f"the interview has {status}")
        self.status = status


class InvalidAnswer(ValueError):
    pass


EMPTY_ANSWER = "text must not be empty (it needs at least one visible character)"


def has_visible_character(text: str) -> bool:
    """Not only separators, control and format characters: zero-width spaces, a BOM or a
    word joiner pass str.strip() but show nothing."""
    return any(unicodedata.category(char)[0] not in "ZC" for char in text)


class IdempotencyKeyReused(ValueError):
    """An Idempotency-Key already used for another answer of the session."""


class ReplyPending(Exception):
    """The answer was stored, but the interviewer's reply could not be (the database failed
    in between): a retry with the same Idempotency-Key, or the next answer, produces it."""

    def __init__(self, answer: TurnRow) -> None:
        super().__init__("the answer was stored; the reply is pending")
        self.answer = answer


# What an answer's Idempotency-Key may be: 1-255 visible ASCII characters (the API's header and
# the demo page's key alike).
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"

# An answer with no reply this old is an orphan: the process that was replying died (a live
# reply takes at most the LLM's turn budget, and holds the session's lock meanwhile).
ORPHANED_ANSWER_SECONDS = 30.0


@dataclass(frozen=True)
class SpokenAudio:
    """The audio of one stretch of a spoken answer, kept for the accurate pass."""

    pcm: bytes  # 16-bit little-endian mono
    sample_rate: int
    started_at: datetime  # when its first sample was heard (a little before the speech)


@dataclass(frozen=True)
class StartedSession:
    session: SessionRow
    token: str


@dataclass
class InterviewerHealth:
    """How the session's interviewer is doing: "normal", or "degraded" when its last line came
    from the scripted fallback because the language model failed."""

    engine: str
    mode: Literal["normal", "degraded"] = "normal"
    degraded_turns: int = 0
    last_reason: str | None = None


@dataclass(frozen=True)
class SessionStatusView:
    session: SessionRow
    turn_count: int
    question_count: int
    elapsed_seconds: float
    interviewer: InterviewerHealth
    voice: str | None = None


@dataclass(frozen=True)
class AnswerOutcome:
    candidate_turn: TurnRow
    interviewer_turn: TurnRow
    session: SessionRow


class InterviewService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        plans: PlanCatalog,
        interviewer: Interviewer,
        events: EventBus,
        voices: VoiceCatalog,
        clock: Clock = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        self.plans = plans
        self.interviewer = interviewer
        self.events = events
        self.voices = voices
        self.clock = clock

    # lifecycle

    async def start(
        self,
        user_id: str,
        plan_id: str | None = None,
        candidate_name: str | None = None,
        metadata: dict[str, Any] | None = None,
        voice: str | None = None,
    ) -> StartedSession:
        """A new session, and the token to use it with; `voice` overrides the plan's for this
        session (UnknownVoice if it is not one)."""
        plan = self.plans.get(plan_id or self.settings.default_plan_id)
        if voice is not None:
            self.voices.check_voice(voice)
        now = self.clock()
        token, token_hash = new_token()
        row = SessionRow(
            id=secrets.token_urlsafe(18),
            token_hash=token_hash,
            user_id=user_id,
            candidate_name=candidate_name,
            plan_id=plan.id,
            meta=metadata or {},
            status=SessionStatus.created,
            created_at=now,
            expires_at=now + timedelta(minutes=self.settings.session_ttl_minutes),
            question_index=0,
            follow_ups_used=0,
            connection_state=ConnectionState.none,
            voice=voice,
        )
        # The opening line is stored with the session so text and voice clients find the first
        # question in the transcript; a voice connection speaks it when it comes up.
        opening = await self.interviewer.opening(self._state(row, plan, []))
        turn = self._interviewer_turn(row, opening, index=0, at=now)
        await self.store.insert_session(row, turn)
        log.info("session_started", session_id=row.id, plan_id=plan.id, voice=voice)
        self.events.publish(row.id, StatusChanged(status=SessionStatus.created))
        self._publish_turn(turn)
        return StartedSession(session=row, token=token)

    async def refresh(self, row: SessionRow) -> SessionRow:
        """The session as it stands now: ended as expired if its time has run out."""
        if self._due(row):
            async with self.store.locks.hold(row.id):
                await self._end(row.id, SessionStatus.expired, EndReason.timeout)
            return await self._reloaded(row.id)
        return row

    async def status(self, row: SessionRow) -> SessionStatusView:
        plan = self.plans.get(row.plan_id)
        return SessionStatusView(
            session=row,
            turn_count=await self.store.count_turns(row.id),
            question_count=len(plan.questions),
            elapsed_seconds=self._elapsed(row),
            interviewer=await self.interviewer_health(row.id),
            voice=self.voice_for(row),
        )

    async def interviewer_health(self, session_id: str) -> InterviewerHealth:
        # From the stored lines, not this process's memory: true after the interview has
        # ended, after a restart, and on any instance.
        reasons = await self.store.degraded_reasons(session_id)
        degraded = [r for r in reasons if r is not None]
        return InterviewerHealth(
            engine=self.interviewer.engine,
            mode="degraded" if reasons and reasons[-1] is not None else "normal",
            degraded_turns=len(degraded),
            last_reason=degraded[-1] if degraded else None,
        )

    async def transcript(self, row: SessionRow) -> Sequence[TurnRow]:
        return await self.store.list_turns(row.id)

    async def answer(
        self, row: SessionRow, text: str, idempotency_key: str | None = None
    ) -> AnswerOutcome:
        """Record a typed answer and commit the interviewer's next line.

        With an `idempotency_key`, a repeat of the request (a retry, a double submit, on any
        instance) returns what the first one stored instead of answering twice.
        """
        answer = text.strip()
        if not has_visible_character(answer):
            raise InvalidAnswer(EMPTY_ANSWER)
        if len(answer) > self.settings.max_answer_chars:
            raise InvalidAnswer(
                f"text is {len(answer)} characters; the limit is {self.settings.max_answer_chars}"
            )
        now = self.clock()
        return await self._record_answer(
            row.id,
            answer,
            source=TurnSource.text,
            started_at=now,
            ended_at=now,
            key=idempotency_key,
        )

    async def answer_spoken(
        self,
        session_id: str,
        text: str,
        started_at: datetime,
        ended_at: datetime,
        on_text: TextSink | None = None,
        continues: bool = False,
        audio: SpokenAudio | None = None,
    ) -> AnswerOutcome:
        """Record a transcribed spoken answer with its speech timings, and the reply.

        `on_text` receives the reply's words as they are generated, before they are committed.
        `continues`: the candidate went on after their answer seemed to end, and the reply to
        it was withdrawn: these words join that answer, which is answered again whole.
        `audio`: what was heard, kept (in the database, with the answer) until the accurate
        pass has transcribed it again; its text then replaces the live `text`.
        """
        if continues:
            return await self._continue_answer(
                session_id, text.strip(), ended_at=ended_at, on_text=on_text, audio=audio
            )
        return await self._record_answer(
            session_id,
            text.strip(),
            source=TurnSource.voice,
            started_at=started_at,
            ended_at=ended_at,
            on_text=on_text,
            audio=audio,
        )

    async def interrupt_line(
        self, session_id: str, index: int, *, heard: str, interruption: Interruption
    ) -> None:
        """The interviewer's line `index` was cut: keep what the candidate heard of it."""
        async with self.store.locks.hold(session_id):
            turns = await self.store.list_turns(session_id)
            turn = next((t for t in turns if t.index == index), None)
            if turn is None or turn.role != Role.interviewer or turn.interruption is not None:
                return
            values: dict[str, Any] = {
                "text": heard,
                "planned_text": turn.text,
                "interruption": interruption,
            }
            await self.store.update_turn(session_id, index, **values)
            turn.text, turn.planned_text, turn.interruption = heard, turn.text, interruption
        log.info(
            "line_interrupted",
            session_id=session_id,
            index=index,
            interruption=interruption.value,
            heard_words=len(heard.split()),
            planned_words=len((turn.planned_text or "").split()),
        )
        self._publish_turn(turn)

    async def check_in(self, session_id: str, text: str) -> TurnRow | None:
        """A gentle word after a long silence; None when the session has moved on meanwhile
        (it ended, or its latest turn is no longer the interviewer's question)."""
        async with self.store.locks.hold(session_id):
            current = await self.store.get_session(session_id)
            if current is None or current.status not in OPEN_STATUSES or self._due(current):
                return None
            turns = await self.store.list_turns(session_id)
            last = turns[-1] if turns else None
            if last is None or last.kind not in (TurnKind.question, TurnKind.follow_up):
                return None
            now = self.clock()
            turn = TurnRow(
                session_id=session_id,
                index=len(turns),
                role=Role.interviewer,
                kind=TurnKind.check_in,
                text=text,
                source=TurnSource.voice,
                question_index=current.question_index,
                started_at=now,
                ended_at=now,
            )
            await self.store.add_turn(turn)
        self._publish_turn(turn)
        return turn

    async def record_reply_timing(
        self,
        session_id: str,
        index: int,
        started_at: datetime,
        ended_at: datetime,
        latency_ms: int | None,
    ) -> None:
        """When a spoken interviewer turn really played, once its audio is known."""
        await self.store.update_turn(
            session_id,
            index,
            source=TurnSource.voice,
            started_at=started_at,
            ended_at=ended_at,
            reply_latency_ms=latency_ms,
        )

    async def connection_changed(self, session_id: str, state: ConnectionState) -> None:
        """Record the voice connection's state: a first connection makes the session active;
        an ended session's connection only ever closes."""
        async with self.store.locks.hold(session_id):
            row = await self.store.get_session(session_id)
            if row is None:
                return
            if row.ended_at is not None:
                state = ConnectionState.closed
            if row.connection_state == state:
                return
            if not await self.store.update_session(session_id, connection_state=state):
                return  # it ended meanwhile: its connection was recorded closed with the end
            activated = state is ConnectionState.connected and await self.store.activate_session(
                session_id, self.clock()
            )
        self.events.publish(session_id, ConnectionChanged(state=state))
        if activated:
            self.events.publish(session_id, StatusChanged(status=SessionStatus.active))

    async def open_session(self, session_id: str) -> SessionRow:
        """The session, if it may still be spoken in (an answer left without a reply by a
        crash is replied to first, so a reconnected candidate hears the next line)."""
        row = await self.store.get_session(session_id)
        if row is None:
            raise SessionNotFound(session_id)
        row = await self.refresh(row)
        if row.status not in OPEN_STATUSES:
            raise SessionClosed(row.status)
        if await self.repair(session_id):
            row = await self._reloaded(session_id)
        return row

    async def repair(self, session_id: str) -> bool:
        """Reply to the session's latest answer if it has none (the process that was replying
        died, or the database failed before the reply was stored); True when it did."""
        async with self.store.locks.hold(session_id):
            current = await self.store.get_session(session_id)
            if current is None or current.status not in OPEN_STATUSES or self._due(current):
                return False
            turns = list(await self.store.list_turns(session_id))
            if not _awaiting_reply(turns):
                return False
            await self._reply_to_orphan(current, turns)
            return True

    async def anticipated_lines(self, session_id: str) -> list[str]:
        row = await self.store.get_session(session_id)
        if row is None or row.status not in OPEN_STATUSES:
            return []
        plan = self.plans.get(row.plan_id)
        return self.interviewer.anticipate(self._state(row, plan, ()))

    async def patience(self, session_id: str) -> float:
        """How patient to be with the answer to the session's current question (its plan's
        `patience`; 1.0 when the session is gone)."""
        row = await self.store.get_session(session_id)
        if row is None:
            return 1.0
        questions = self.plans.get(row.plan_id).questions
        return questions[min(row.question_index, len(questions) - 1)].patience

    def voice_for(self, row: SessionRow) -> str | None:
        """The session's voice, else its plan's; None speaks the engine's default (TTS_VOICE)."""
        return row.voice or self.plans.get(row.plan_id).voice

    async def current_line(self, session_id: str) -> TurnRow | None:
        """The interviewer's latest line: what a (re)connected candidate should hear (whole,
        even if it was cut; a check-in or a withdrawn reply is not repeated)."""
        for turn in reversed(await self.store.list_turns(session_id)):
            if (
                turn.role == Role.interviewer
                and turn.kind != TurnKind.check_in
                and turn.interruption != Interruption.withdrawn
            ):
                if turn.planned_text is not None:
                    return TurnRow(
                        session_id=turn.session_id,
                        index=turn.index,
                        role=turn.role,
                        kind=turn.kind,
                        text=turn.planned_text,
                        source=turn.source,
                        question_index=turn.question_index,
                        started_at=turn.started_at,
                        ended_at=turn.ended_at,
                    )
                return turn
        return None

    async def _continue_answer(
        self,
        session_id: str,
        more: str,
        *,
        ended_at: datetime,
        on_text: TextSink | None,
        audio: SpokenAudio | None,
    ) -> AnswerOutcome:
        """Join `more` to the latest answer, whose reply was withdrawn, and reply again."""
        async with self.store.locks.hold(session_id):
            current = await self.store.get_session(session_id)
            if current is None:
                raise SessionNotFound(session_id)
            if current.status not in OPEN_STATUSES:
                raise SessionClosed(current.status)
            turns = list(await self.store.list_turns(current.id))
            answer = next((t for t in reversed(turns) if t.role == Role.candidate), None)
            after = [t for t in turns if answer is not None and t.index > answer.index]
            joinable = bool(after) and all(t.interruption == Interruption.withdrawn for t in after)
        if answer is None or not joinable:
            # Nothing to join (the reply was not withdrawn after all): an answer of its own.
            if not has_visible_character(more):
                raise InvalidAnswer(EMPTY_ANSWER)
            return await self._record_answer(
                session_id,
                more,
                source=TurnSource.voice,
                started_at=ended_at if audio is None else audio.started_at,
                ended_at=ended_at,
                on_text=on_text,
                audio=audio,
            )
        answer_text = " ".join(part for part in (answer.text, more) if part)
        async with self.store.locks.hold(session_id):
            # The session's place in the plan goes back to where the answer left it.
            follow_ups = sum(
                1
                for t in turns
                if t.kind == TurnKind.follow_up
                and t.question_index == answer.question_index
                and t.index < answer.index
                and t.interruption != Interruption.withdrawn
            )
            question_index = answer.question_index or 0
            kept = self._kept_audio(current, turns, answer, audio, more)
            transcription = answer.transcription
            if kept is not None:
                transcription = Transcription.live  # a stretch of it waits for its pass
            await self.store.continue_turn(
                session_id,
                answer.index,
                kept,
                text=answer_text,
                ended_at=ended_at,
                transcription=transcription,
            )
            answer.transcription = transcription
            await self.store.update_session(
                session_id, question_index=question_index, follow_ups_used=follow_ups
            )
            answer.text, answer.ended_at = answer_text, ended_at
            current.question_index, current.follow_ups_used = question_index, follow_ups
            log.info(
                "answer_continued",
                session_id=session_id,
                index=answer.index,
                words=len(answer_text.split()),
            )
            self._publish_turn(answer)
            return await self._reply(current, turns, answer, on_text)

    async def _record_answer(
        self,
        session_id: str,
        answer: str,
        *,
        source: TurnSource,
        started_at: datetime,
        ended_at: datetime,
        on_text: TextSink | None = None,
        key: str | None = None,
        audio: SpokenAudio | None = None,
    ) -> AnswerOutcome:
        async with self.store.locks.hold(session_id):
            # Re-read under the lock: another request (on any instance) may have moved or
            # ended the session.
            current = await self.store.get_session(session_id)
            if current is None:
                raise SessionNotFound(session_id)
            if key is not None:
                stored = await self.store.get_answer_key(session_id, key)
                if stored is not None:
                    return await self._replay(current, stored, answer)
            if self._due(current):
                await self._end(current.id, SessionStatus.expired, EndReason.timeout)
                raise SessionClosed(SessionStatus.expired)
            if current.status not in OPEN_STATUSES:
                raise SessionClosed(current.status)
            # The plan is checked before the answer is stored (a plan removed since the start).
            self.plans.get(current.plan_id)
            turns = list(await self.store.list_turns(current.id))
            if _awaiting_reply(turns):
                # An earlier answer lost its reply to a crash: the interviewer replies to it
                # first, so this answer answers the line that reply asks.
                outcome = await self._reply_to_orphan(current, turns)
                if outcome.session.status not in OPEN_STATUSES:
                    raise SessionClosed(outcome.session.status)
                turns = list(await self.store.list_turns(current.id))
            candidate = TurnRow(
                session_id=current.id,
                index=len(turns),
                role=Role.candidate,
                kind=TurnKind.answer,
                text=answer,
                source=source,
                question_index=current.question_index,
                started_at=started_at,
                ended_at=ended_at,
                transcription=Transcription.typed if source == TurnSource.text else None,
            )
            kept = None
            if source == TurnSource.voice:
                kept = self._kept_audio(current, turns, candidate, audio, answer)
                if kept is not None:
                    candidate.transcription = Transcription.live
                else:
                    candidate.transcription = Transcription.live_only
                    candidate.transcription_note = self._no_pass_note()
            activating = current.status == SessionStatus.created
            answer_key = None
            if key is not None:
                answer_key = AnswerKeyRow(
                    session_id=current.id,
                    key=key,
                    request_hash=_text_hash(answer),
                    answer_index=candidate.index,
                    created_at=self.clock(),
                )
            # The candidate's words (and their key) are committed before the interviewer is
            # asked anything, so a failing interviewer or a dropped connection never loses them.
            try:
                await self.store.add_turn(
                    candidate,
                    answer_key=answer_key,
                    activate_at=started_at if activating else None,
                    audio=kept,
                )
            except SessionEnded:
                raise SessionClosed(await self._status(current.id)) from None
            if activating:
                current.status, current.started_at = SessionStatus.active, started_at
            turns.append(candidate)
            log.info(
                "turn_committed",
                session_id=current.id,
                index=candidate.index,
                role="candidate",
                source=source,
                words=len(answer.split()),
            )
            if activating:
                self.events.publish(current.id, StatusChanged(status=SessionStatus.active))
            self._publish_turn(candidate)
            try:
                return await self._reply(current, turns, candidate, on_text, settles_key=key)
            except SQLAlchemyError as exc:
                # Stored answer, no reply: "retry, nothing was stored" would be untrue.
                log.warning("reply_pending", session_id=current.id, error=type(exc).__name__)
                raise ReplyPending(candidate) from exc

    def _kept_audio(
        self,
        session: SessionRow,
        turns: Sequence[TurnRow],
        answer: TurnRow,
        audio: SpokenAudio | None,
        live_text: str,
    ) -> AnswerAudioRow | None:
        """The row that keeps a stretch of `answer`'s audio for the accurate pass (None when
        there is no pass to run); its context is the question it answers and the plan's
        vocabulary."""
        if audio is None or not audio.pcm or self.settings.accurate_stt_model == "off":
            return None
        question = next(
            (
                t.planned_text or t.text
                for t in reversed(turns)
                if t.index < answer.index
                and t.role == Role.interviewer
                and t.kind != TurnKind.check_in
            ),
            None,
        )
        plan = self.plans.get(session.plan_id)
        offset = audio.started_at - answer.started_at
        return new_stretch(
            session_id=session.id,
            turn_index=answer.index,
            segment=0,  # numbered by the store for a continued answer
            offset_ms=round(offset.total_seconds() * 1000),
            pcm=audio.pcm,
            sample_rate=audio.sample_rate,
            live_text=live_text,
            context=accurate_context(question, plan.vocabulary),
            now=self.clock(),
            deadline_seconds=self.settings.accurate_pass_deadline_seconds,
        )

    def _no_pass_note(self) -> str:
        return "not_configured" if self.settings.accurate_stt_model == "off" else "audio_lost"

    async def _replay(
        self, current: SessionRow, stored: AnswerKeyRow, answer: str
    ) -> AnswerOutcome:
        """What the answer with this key stored; its reply produced now if it has none."""
        if stored.request_hash != _text_hash(answer):
            raise IdempotencyKeyReused("this Idempotency-Key was used for another answer")
        turns = list(await self.store.list_turns(current.id))
        candidate = next(t for t in turns if t.index == stored.answer_index)
        if stored.reply_index is None and turns[-1] is candidate:
            if current.status not in OPEN_STATUSES:
                raise SessionClosed(current.status)
            return await self._reply_to_orphan(current, turns, settles_key=stored.key)
        reply = _reply_to(turns, candidate)
        if reply is None:
            # Answered by a voice connection since (withdrawn, then continued): nothing to
            # replay but the answer itself and the latest line.
            reply = next(t for t in reversed(turns) if t.role == Role.interviewer)
        log.info("answer_replayed", session_id=current.id, index=candidate.index)
        return AnswerOutcome(candidate, reply, current)

    async def _reply_to_orphan(
        self, current: SessionRow, turns: Sequence[TurnRow], settles_key: str | None = None
    ) -> AnswerOutcome:
        """The reply to the latest answer, which lost its own to a crash or a failed write."""
        log.warning("answer_repaired", session_id=current.id, index=turns[-1].index)
        return await self._reply(current, turns, turns[-1], None, settles_key=settles_key)

    async def _reply(
        self,
        current: SessionRow,
        turns: Sequence[TurnRow],
        answer: TurnRow,
        on_text: TextSink | None,
        settles_key: str | None = None,
    ) -> AnswerOutcome:
        """The interviewer's line after the committed `answer` (the last of `turns`'s answers),
        committed (with the answer's Idempotency-Key settled); called holding the session's
        lock."""
        plan = self.plans.get(current.plan_id)
        reply = await self.interviewer.reply(
            self._state(current, plan, turns), answer.text, on_text
        )
        self._note_interviewer(current.id, reply, turns)
        try:
            interviewer = await self._commit_interviewer_turn(
                current, reply, index=len(turns), at=self.clock(), settles_key=settles_key
            )
        except SessionEnded:
            raise SessionClosed(await self._status(current.id)) from None
        if reply.closes:
            await self._end(current.id, SessionStatus.ended, EndReason.plan_finished)
        refreshed = await self.store.get_session(current.id)
        assert refreshed is not None
        return AnswerOutcome(answer, interviewer, refreshed)

    async def end(self, row: SessionRow, reason: EndReason = EndReason.candidate) -> SessionRow:
        """End the interview; ending an ended interview changes nothing."""
        async with self.store.locks.hold(row.id):
            await self._end(row.id, SessionStatus.ended, reason)
        return await self._reloaded(row.id)

    # background upkeep

    async def expire_due_sessions(self) -> int:
        """End the sessions whose time ran out; safe on any number of instances at once (each
        end is decided under the session's lock and recorded by a conditional update)."""
        expired = await self.store.open_sessions_expired_by(self.clock())
        for session_id in expired:
            async with self.store.locks.hold(session_id):
                await self._end(session_id, SessionStatus.expired, EndReason.timeout)
        return len(expired)

    async def repair_orphaned_answers(self) -> int:
        """Reply to answers whose replying process died (any instance may run this)."""
        cutoff = self.clock() - timedelta(seconds=ORPHANED_ANSWER_SECONDS)
        repaired = 0
        for session_id in await self.store.sessions_awaiting_reply(cutoff):
            repaired += await self.repair(session_id)
        return repaired

    # internals

    async def _reloaded(self, session_id: str) -> SessionRow:
        """The session as stored now; SessionNotFound once it was erased meanwhile."""
        row = await self.store.get_session(session_id)
        if row is None:
            raise SessionNotFound(session_id)
        return row

    async def _status(self, session_id: str) -> SessionStatus:
        row = await self.store.get_session(session_id)
        return row.status if row is not None else SessionStatus.ended

    def _elapsed(self, row: SessionRow) -> float:
        if row.started_at is None:
            return 0.0
        until = row.ended_at or self.clock()
        return max(0.0, (until - row.started_at).total_seconds())

    def _state(
        self, row: SessionRow, plan: InterviewPlan, turns: Sequence[TurnRow]
    ) -> InterviewState:
        return InterviewState(
            plan=plan,
            question_index=row.question_index,
            follow_ups_used=row.follow_ups_used,
            elapsed_seconds=self._elapsed(row),
            # A withdrawn line was never really said; a check-in moves nothing.
            history=tuple(
                PastTurn(
                    role=t.role,
                    text=t.text,
                    interrupted=t.interruption is not None,
                    planned_text=t.planned_text,
                )
                for t in turns
                if t.interruption != Interruption.withdrawn and t.kind != TurnKind.check_in
            ),
        )

    @staticmethod
    def _interviewer_turn(
        row: SessionRow, reply: InterviewerReply, *, index: int, at: datetime
    ) -> TurnRow:
        # Stored as text; a voice connection marks it spoken once its audio has played.
        return TurnRow(
            session_id=row.id,
            index=index,
            role=Role.interviewer,
            kind=TurnKind(reply.action.value),
            text=reply.text,
            source=TurnSource.text,
            question_index=reply.question_index,
            started_at=at,
            ended_at=at,
            degraded_reason=reply.degraded,
        )

    async def _commit_interviewer_turn(
        self,
        row: SessionRow,
        reply: InterviewerReply,
        *,
        index: int,
        at: datetime,
        settles_key: str | None = None,
    ) -> TurnRow:
        turn = self._interviewer_turn(row, reply, index=index, at=at)
        await self.store.add_turn(
            turn,
            settles_key=settles_key,
            question_index=reply.question_index,
            follow_ups_used=reply.follow_ups_used,
        )
        row.question_index, row.follow_ups_used = reply.question_index, reply.follow_ups_used
        log.info(
            "turn_committed",
            session_id=row.id,
            index=index,
            role="interviewer",
            action=reply.action.value,
            question_index=reply.question_index,
        )
        self._publish_turn(turn)
        return turn

    def _note_interviewer(
        self, session_id: str, reply: InterviewerReply, turns: Sequence[TurnRow]
    ) -> None:
        mode: Literal["normal", "degraded"] = "degraded" if reply.degraded else "normal"
        if reply.degraded:
            log.warning("interviewer_degraded", session_id=session_id, reason=reply.degraded)
        # Only a change of mode is an event. The mode before is the stored line's before this
        # one, so a restarted or another instance announces the recovery too.
        before = next((t for t in reversed(turns) if t.role == Role.interviewer), None)
        if mode != ("degraded" if before and before.degraded_reason else "normal"):
            self.events.publish(
                session_id, InterviewerModeChanged(mode=mode, reason=reply.degraded)
            )

    def _due(self, row: SessionRow) -> bool:
        return row.status in OPEN_STATUSES and self.clock() >= row.expires_at

    async def _end(self, session_id: str, status: SessionStatus, reason: EndReason) -> None:
        now = self.clock()
        if await self.store.end_session_if_open(session_id, status=status, reason=reason, at=now):
            log.info("session_ended", session_id=session_id, status=status, reason=reason)
            # The report writer (interview.report.writer) reacts to this.
            self.events.publish(session_id, StatusChanged(status=status, reason=reason))

    def _publish_turn(self, turn: TurnRow) -> None:
        self.events.publish(
            turn.session_id, TurnCommitted.model_validate(turn, from_attributes=True)
        )


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _awaiting_reply(turns: Sequence[TurnRow]) -> bool:
    """The latest turn is an answer: the interviewer has not replied to it."""
    return bool(turns) and turns[-1].role == Role.candidate


def _reply_to(turns: Sequence[TurnRow], answer: TurnRow) -> TurnRow | None:
    """The interviewer's line that replied to `answer` (not withdrawn, not a check-in)."""
    for turn in turns:
        if (
            turn.index > answer.index
            and turn.role == Role.interviewer
            and turn.interruption != Interruption.withdrawn
            and turn.kind != TurnKind.check_in
        ):
            return turn
        if turn.index > answer.index and turn.role == Role.candidate:
            return None
    return None
