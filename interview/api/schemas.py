"""Request and response bodies: the contract /openapi.json publishes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    StringConstraints,
    field_validator,
)

from interview.config import ANSWER_MAX_CHARS, InterviewerEngine
from interview.domain import (
    ConnectionState,
    EndReason,
    Interruption,
    ReportStatus,
    Role,
    SessionStatus,
    Transcription,
    TurnKind,
    TurnSource,
)
from interview.sessions import AnswerOutcome, SessionStatusView, StartedSession
from interview.speech.tts.kokoro import VOICE_NAME
from interview.store import TurnRow
from interview.turn_credentials import IceServers


def _storable_text(value: str) -> str:
    # PostgreSQL text cannot hold NUL; refusing it here keeps both backends alike.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    # JSON's \ud800 escapes decode to lone surrogates, which no database driver can encode.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no unpaired surrogates)") from None
    return value


Text = Annotated[StrictStr, AfterValidator(_storable_text)]


def _strings(value: Any) -> Iterator[str]:
    """Every key and string in a JSON value, at any depth."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


class ErrorDetail(BaseModel):
    field: str | None = None
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    error: ErrorBody


class HealthCheck(BaseModel):
    ok: bool
    detail: str


class HealthResponse(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, HealthCheck]


class LivenessResponse(BaseModel):
    """This process alone: no database, no other service (the load balancer's health check)."""

    status: Literal["ok", "unavailable"]
    detail: str


class PlanInfo(BaseModel):
    id: str
    title: str
    role: str
    question_count: int
    time_budget_minutes: float


class PlanListResponse(BaseModel):
    default_plan_id: str
    plans: list[PlanInfo]


class StartRequest(BaseModel):
    user_id: Text = Field(min_length=1, max_length=200, examples=["test-user"])
    plan_id: Text | None = Field(default=None, max_length=100)
    candidate_name: Text | None = Field(default=None, max_length=200)
    # The constraints inside the union's string member: on the field, pydantic checks the
    # pattern but leaves it out of the JSON schema.
    voice: (
        Annotated[
            StrictStr,
            StringConstraints(max_length=64, pattern=VOICE_NAME.pattern),
            AfterValidator(_storable_text),
        ]
        | None
    ) = Field(
        default=None,
        examples=["bf_emma"],
        description="The interviewer's voice for this session, a Kokoro voice such as "
        "'af_heart' or 'bf_emma'; without it, the plan's voice (or TTS_VOICE). When voice is "
        "enabled it must be one the server has (a 422 lists them). With TTS_ENGINE=openai the "
        "OpenAI engine speaks OPENAI_TTS_VOICE and this voice is the local fallback's.",
    )
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Free-form JSON kept with the session."
    )

    @field_validator("metadata")
    @classmethod
    def _storable_metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            raise ValueError("must not contain NaN or Infinity") from None
        for text in _strings(value):
            _storable_text(text)
        return value


class StartResponse(BaseModel):
    session_id: str
    token: str = Field(description="Send as 'Authorization: Bearer <token>' on session routes.")
    status: SessionStatus
    plan_id: str
    created_at: datetime
    expires_at: datetime

    @classmethod
    def of(cls, started: StartedSession) -> StartResponse:
        s = started.session
        return cls(
            session_id=s.id,
            token=started.token,
            status=s.status,
            plan_id=s.plan_id,
            created_at=s.created_at,
            expires_at=s.expires_at,
        )


class InterviewerStatus(BaseModel):
    engine: InterviewerEngine = Field(
        description="The configured interviewer: a language model, or the offline script."
    )
    mode: Literal["normal", "degraded"] = Field(
        description="'degraded' while the language model fails and the script stands in."
    )
    degraded_turns: int = Field(description="Lines of this session spoken by the fallback.")
    last_reason: str | None = Field(description="Why the last fallback happened.")


class StatusResponse(BaseModel):
    session_id: str
    status: SessionStatus
    plan_id: str
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    expires_at: datetime
    end_reason: EndReason | None
    elapsed_seconds: float
    turn_count: int
    question_index: int
    question_count: int
    connection_state: ConnectionState
    interviewer: InterviewerStatus
    voice: str | None = Field(
        description="The interviewer's voice: the session's, else the plan's; null is the "
        "server's default (TTS_VOICE)."
    )

    @classmethod
    def of(cls, view: SessionStatusView) -> StatusResponse:
        s = view.session
        return cls(
            session_id=s.id,
            status=s.status,
            plan_id=s.plan_id,
            created_at=s.created_at,
            started_at=s.started_at,
            ended_at=s.ended_at,
            expires_at=s.expires_at,
            end_reason=s.end_reason,
            elapsed_seconds=round(view.elapsed_seconds, 3),
            turn_count=view.turn_count,
            question_index=s.question_index,
            question_count=view.question_count,
            connection_state=s.connection_state,
            interviewer=InterviewerStatus(
                engine=view.interviewer.engine,
                mode=view.interviewer.mode,
                degraded_turns=view.interviewer.degraded_turns,
                last_reason=view.interviewer.last_reason,
            ),
            voice=view.voice,
        )


class IceServer(BaseModel):
    urls: list[str]
    username: str
    credential: str


class IceServersResponse(BaseModel):
    """The browser's RTCConfiguration.iceServers, with how long the credentials last."""

    model_config = ConfigDict(populate_by_name=True)

    ice_servers: list[IceServer] = Field(alias="iceServers")
    ttl: int

    @classmethod
    def of(cls, servers: IceServers) -> IceServersResponse:
        return cls(
            ice_servers=[
                IceServer(urls=s.urls, username=s.username, credential=s.credential)
                for s in servers.servers
            ],
            ttl=servers.ttl,
        )


class WordTiming(BaseModel):
    word: str = Field(description="As the accurate pass heard it, with its leading space.")
    start: float = Field(description="Seconds from the turn's started_at.")
    end: float


class Turn(BaseModel):
    index: int
    role: Role
    kind: TurnKind
    text: str
    started_at: datetime
    ended_at: datetime
    source: TurnSource
    question_index: int | None
    interruption: Interruption | None = Field(
        default=None,
        description="Set when the interviewer's line was cut: `text` is then what was played "
        "and `planned_text` the whole line; a `withdrawn` line does not count as said.",
    )
    planned_text: str | None = None
    transcription: Transcription | None = Field(
        default=None,
        description="A candidate turn's origin: `typed` (text mode, exact); `live` (the live "
        "speech-to-text, which drove the conversation; the accurate pass is still to come); "
        "`accurate` (the accurate pass replaced it; `draft_text` is the live text); "
        "`live_only` (the live text stands: the accurate pass failed, timed out or is off; "
        "`transcription_note` says which). Null for the interviewer's lines.",
    )
    transcription_note: str | None = None
    draft_text: str | None = Field(
        default=None, description="The live pass's text, once the accurate pass replaced it."
    )
    words: list[WordTiming] | None = Field(
        default=None,
        description="The accurate pass's words with their times; the words of one stretch of "
        "speech, joined, give its text.",
    )

    @classmethod
    def of(cls, row: TurnRow) -> Turn:
        words = None
        if row.words is not None:
            words = [WordTiming(word=w, start=start, end=end) for w, start, end in row.words]
        return cls.model_validate(
            {
                "index": row.index,
                "role": row.role,
                "kind": row.kind,
                "text": row.text,
                "started_at": row.started_at,
                "ended_at": row.ended_at,
                "source": row.source,
                "question_index": row.question_index,
                "interruption": row.interruption,
                "planned_text": row.planned_text,
                "transcription": row.transcription,
                "transcription_note": row.transcription_note,
                "draft_text": row.draft_text,
                "words": words,
            }
        )


class TranscriptResponse(BaseModel):
    session_id: str
    status: SessionStatus
    turns: list[Turn]


class AnswerRequest(BaseModel):
    text: Text = Field(
        min_length=1,
        # The default of MAX_ANSWER_CHARS, which may only lower it (interview/config.py).
        max_length=ANSWER_MAX_CHARS,
        description="The candidate's typed answer: at least one visible character, and at "
        f"most MAX_ANSWER_CHARS ({ANSWER_MAX_CHARS} by default) once surrounding whitespace is "
        "trimmed.",
    )


class AnswerResponse(BaseModel):
    candidate_turn: Turn
    interviewer_turn: Turn
    status: SessionStatus
    interview_complete: bool

    @classmethod
    def of(cls, outcome: AnswerOutcome) -> AnswerResponse:
        return cls(
            candidate_turn=Turn.of(outcome.candidate_turn),
            interviewer_turn=Turn.of(outcome.interviewer_turn),
            status=outcome.session.status,
            interview_complete=outcome.session.ended_at is not None,
        )


class AnswerPending(BaseModel):
    """202: the answer is stored, the interviewer's reply is not yet (the database failed in
    between). Retry with the same Idempotency-Key to get it; the next answer also produces it."""

    status: Literal["reply_pending"] = "reply_pending"
    candidate_turn: Turn
    message: str = (
        "Your answer was saved; the interviewer's reply is pending. Retry with the same "
        "Idempotency-Key to get it."
    )


class EndResponse(BaseModel):
    session_id: str
    status: SessionStatus
    end_reason: EndReason | None
    ended_at: datetime | None


class ResultsStatus(BaseModel):
    status: Literal[ReportStatus.pending, ReportStatus.failed]
    reason: str | None = None


class RtcOfferRequest(BaseModel):
    sdp: Text = Field(max_length=60_000)
    type: Text = Field(max_length=64, examples=["offer"])


class RtcDescription(BaseModel):
    sdp: str
    type: str


class IceCandidateRequest(BaseModel):
    """A trickled candidate, as RTCIceCandidate.toJSON() gives it."""

    candidate: Text = Field(max_length=1000)
    sdpMid: Text | None = Field(default=None, max_length=64)
    sdpMLineIndex: int | None = Field(default=None, ge=0, le=64)


class IceCandidateResponse(BaseModel):
    status: Literal["added"]
