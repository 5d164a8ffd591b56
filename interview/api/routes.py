"""The REST routes under /api/interview: validate, call the domain, shape the response."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError
from starlette.convertors import StringConvertor, register_url_convertor

from interview.access import SessionAccess, SessionNotFound
from interview.api.errors import (
    BODY_STATUSES,
    SESSION_STATUSES,
    MissingToken,
    error_responses,
)
from interview.api.limits import limit_answers, limit_start
from interview.api.schemas import (
    AnswerPending,
    AnswerRequest,
    AnswerResponse,
    EndResponse,
    HealthCheck,
    HealthResponse,
    IceServersResponse,
    LivenessResponse,
    PlanInfo,
    PlanListResponse,
    ResultsStatus,
    StartRequest,
    StartResponse,
    StatusResponse,
    TranscriptResponse,
    Turn,
)
from interview.report import Report
from interview.report.models import EvaluationScheduled
from interview.report.render import render
from interview.report.writer import ReportWriter
from interview.runtime import Runtime
from interview.sessions import IDEMPOTENCY_KEY_PATTERN, InterviewService, ReplyPending
from interview.store import SessionRow
from interview.voice.gateway import VoiceGateway

# Any request, on any route, may have headers too large.
router = APIRouter(responses=error_responses(431))

# The routes that are one fixed word under the prefix; a session's own path (/{session_id}) is
# any other word, so that DELETE /health is no method of /health (its Allow says GET, HEAD).
FIXED_PATHS = ("health", "plans", "start")


class SessionPathConvertor(StringConvertor):
    regex = rf"(?!(?:{'|'.join(FIXED_PATHS)})$)[^/]+"


register_url_convertor("session", SessionPathConvertor())
SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_bearer = HTTPBearer(
    auto_error=False,
    description="The token returned by POST /start (43 URL-safe characters); a wrong one is a "
    "404, like an unknown session.",
)
# An id of another form is refused (422) before any database work.
SessionId = Annotated[
    str,
    Path(description="The session_id returned by POST /start.", pattern=SESSION_ID_PATTERN),
]


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime  # Starlette's state is untyped; app.py sets it
    return runtime


def get_service(runtime: Annotated[Runtime, Depends(get_runtime)]) -> InterviewService:
    return runtime.service


def get_access(runtime: Annotated[Runtime, Depends(get_runtime)]) -> SessionAccess:
    return runtime.access


def get_reports(runtime: Annotated[Runtime, Depends(get_runtime)]) -> ReportWriter:
    return runtime.reports


def get_voice(runtime: Annotated[Runtime, Depends(get_runtime)]) -> VoiceGateway:
    return runtime.voice


async def authorized_session(
    session_id: SessionId,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    access: Annotated[SessionAccess, Depends(get_access)],
) -> SessionRow:
    if credentials is None or not credentials.credentials:
        raise MissingToken()
    return await access.authenticate(session_id, credentials.credentials)


Service = Annotated[InterviewService, Depends(get_service)]
Reports = Annotated[ReportWriter, Depends(get_reports)]
Voice = Annotated[VoiceGateway, Depends(get_voice)]
AuthorizedSession = Annotated[SessionRow, Depends(authorized_session)]

_SESSION_ERRORS = error_responses(*SESSION_STATUSES)


@router.head("/health", include_in_schema=False)
@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "Not ready or draining."}},
)
async def health(runtime: Annotated[Runtime, Depends(get_runtime)]) -> JSONResponse:
    checks: dict[str, HealthCheck] = {}
    try:
        await asyncio.wait_for(runtime.store.ping(), timeout=3)
        checks["database"] = HealthCheck(ok=True, detail="reachable")
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        checks["database"] = HealthCheck(ok=False, detail=f"unreachable: {type(exc).__name__}")
    schema = "ready" if runtime.ready else "initializing"
    if runtime.schema_error is not None:
        schema = f"failed: {runtime.schema_error}"
    checks["schema"] = HealthCheck(ok=runtime.ready, detail=schema)
    checks["accepting"] = HealthCheck(
        ok=not runtime.draining, detail="draining" if runtime.draining else "accepting interviews"
    )
    checks["plans"] = HealthCheck(ok=True, detail=f"{len(runtime.plans.ids())} loaded")
    voice = runtime.voice
    checks["voice"] = HealthCheck(
        ok=voice.state in ("ready", "disabled"),
        detail=f"{voice.state}: {voice.detail}"
        + (f"; {voice.live_connections()} live connections" if voice.state == "ready" else ""),
    )
    checks["turn"] = HealthCheck(
        ok=True,
        detail="configured"
        if runtime.turn_issuer.configured
        else "not configured: /ice-servers returns an empty list",
    )
    healthy = all(check.ok for check in checks.values())
    body = HealthResponse(status="ok" if healthy else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)


@router.head("/health/live", include_in_schema=False)
@router.get(
    "/health/live",
    response_model=LivenessResponse,
    responses={503: {"model": LivenessResponse, "description": "Draining or loading."}},
    description="Shallow health of this process, for the load balancer: no database or other "
    "dependency is checked, so a database failover does not take every task out of service "
    "(and ECS does not replace them mid-interview). 503 while the server drains, and while "
    "its voice models load or if they failed (a state of this process that never comes back "
    "once ready). GET /health is the deep check.",
)
async def liveness(runtime: Annotated[Runtime, Depends(get_runtime)]) -> JSONResponse:
    voice = runtime.voice.state
    if runtime.draining:
        body = LivenessResponse(status="unavailable", detail="draining")
    elif voice not in ("ready", "disabled"):
        body = LivenessResponse(status="unavailable", detail=f"voice {voice}")
    else:
        body = LivenessResponse(status="ok", detail="accepting interviews")
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ok" else 503)


@router.get("/plans", response_model=PlanListResponse)
async def list_plans(runtime: Annotated[Runtime, Depends(get_runtime)]) -> PlanListResponse:
    return PlanListResponse(
        default_plan_id=runtime.settings.default_plan_id,
        plans=[
            PlanInfo(
                id=p.id,
                title=p.title,
                role=p.role,
                question_count=len(p.questions),
                time_budget_minutes=p.time_budget_minutes,
            )
            for p in runtime.plans.all()
        ],
    )


@router.post(
    "/start",
    status_code=status.HTTP_201_CREATED,
    response_model=StartResponse,
    responses=error_responses(
        *BODY_STATUSES,
        429,
        503,
        descriptions={
            422: "Invalid body (invalid_request, unstorable_input), unknown plan (unknown_plan) "
            "or voice (unknown_voice).",
            503: "The database is unavailable (database_unavailable), or the server is "
            "draining (draining): retry after Retry-After seconds.",
        },
    ),
    dependencies=[Depends(limit_start)],
)
async def start(body: StartRequest, service: Service) -> StartResponse:
    started = await service.start(
        user_id=body.user_id,
        plan_id=body.plan_id,
        candidate_name=body.candidate_name,
        metadata=body.metadata,
        voice=body.voice,
    )
    return StartResponse.of(started)


@router.get("/{session_id}/status", response_model=StatusResponse, responses=_SESSION_ERRORS)
async def session_status(session: AuthorizedSession, service: Service) -> StatusResponse:
    return StatusResponse.of(await service.status(session))


@router.get(
    "/{session_id}/ice-servers",
    response_model=IceServersResponse,
    responses={**_SESSION_ERRORS, **error_responses(409)},
)
async def ice_servers(
    session: AuthorizedSession, voice: Voice, response: Response
) -> IceServersResponse:
    # Credentials are per request and short-lived: no cache may keep them.
    response.headers["Cache-Control"] = "no-store"
    return IceServersResponse.of(voice.ice_servers(session))


@router.get(
    "/{session_id}/transcript", response_model=TranscriptResponse, responses=_SESSION_ERRORS
)
async def transcript(session: AuthorizedSession, service: Service) -> TranscriptResponse:
    turns = await service.transcript(session)
    return TranscriptResponse(
        session_id=session.id, status=session.status, turns=[Turn.of(t) for t in turns]
    )


@router.post(
    "/{session_id}/transcript",
    response_model=AnswerResponse,
    responses={
        **error_responses(
            *SESSION_STATUSES,
            *BODY_STATUSES,
            409,
            429,
            descriptions={
                409: "The interview has ended (session_closed, session_expired), or another "
                "request changed it at the same time (conflict).",
                422: "Invalid body (invalid_request, unstorable_input), text with no visible "
                "character or over MAX_ANSWER_CHARS (invalid_answer), or an Idempotency-Key "
                "used for another answer (idempotency_key_reused).",
            },
        ),
        202: {"model": AnswerPending, "description": "Answer stored; the reply is pending."},
    },
    dependencies=[Depends(limit_answers)],
    description="Answer in text; the interviewer's next line comes back. Send an "
    "`Idempotency-Key` (one per answer, e.g. a UUID, the same on every retry of it): a repeat "
    "on any instance returns what the first request stored instead of answering twice.",
)
async def answer(
    body: AnswerRequest,
    session: AuthorizedSession,
    service: Service,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="One per answer, reused on its retries (1-255 visible ASCII characters).",
        ),
    ] = None,
) -> AnswerResponse | JSONResponse:
    try:
        outcome = await service.answer(session, body.text, idempotency_key=idempotency_key)
    except ReplyPending as pending:
        body_ = AnswerPending(candidate_turn=Turn.of(pending.answer))
        return JSONResponse(body_.model_dump(mode="json"), status_code=202)
    return AnswerResponse.of(outcome)


@router.post("/{session_id}/end", response_model=EndResponse, responses=_SESSION_ERRORS)
async def end(session: AuthorizedSession, service: Service) -> EndResponse:
    ended = await service.end(session)
    return EndResponse(
        session_id=ended.id,
        status=ended.status,
        end_reason=ended.end_reason,
        ended_at=ended.ended_at,
    )


@router.get(
    "/{session_id}/results",
    response_model=Report | ResultsStatus,
    responses={
        **error_responses(
            *SESSION_STATUSES,
            409,
            422,
            descriptions={
                409: "The interview is still running (interview_running).",
                422: "An unknown `format` (invalid_request).",
            },
        ),
        200: {
            "content": {
                "text/markdown": {"schema": {"type": "string"}},
                "text/html": {"schema": {"type": "string"}},
            },
            "description": "The report: JSON, or with `format` a readable document.",
        },
        202: {"model": ResultsStatus, "description": "The report is being computed."},
    },
    description="200 with the report, or 200 with status 'failed' and the reason when the "
    "report could not be computed; 202 while it is computed. `format=md` or `format=html` "
    "returns the report as a document to read or print (the HTML is self-contained); the "
    "pending and failed answers stay JSON.",
)
async def results(
    session: AuthorizedSession,
    reports: Reports,
    format: Annotated[
        Literal["json", "md", "html"], Query(description="json (default), md or html")
    ] = "json",
) -> Report | Response:
    outcome = await reports.results(session)
    if isinstance(outcome, Report):
        if format == "md":
            return Response(render(outcome, "md"), media_type="text/markdown; charset=utf-8")
        if format == "html":
            return HTMLResponse(render(outcome, "html"))
        return outcome
    body = ResultsStatus(status=outcome.status, reason=outcome.reason).model_dump()
    return JSONResponse(body, status_code=202 if outcome.status == "pending" else 200)


@router.post(
    "/{session_id}/results/evaluation",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EvaluationScheduled,
    responses=error_responses(
        *SESSION_STATUSES,
        409,
        descriptions={
            409: "No evaluation can be made now: the interview is running "
            "(`interview_running`), its report is being written (`report_pending`) or could not "
            "be (`report_failed`), the candidate gave no answer (`nothing_to_evaluate`), or no "
            "language model evaluates reports here (`evaluation_not_configured`).",
        },
    ),
    description="Ask for a new evaluation of the report, e.g. once the model is back after "
    "the background attempts were spent. It starts at once in the background with a fresh "
    "budget of attempts; GET .../results holds it when done, and a `results` event says so. "
    "A report that has an evaluation keeps it unless the new one succeeds.",
)
async def request_evaluation(session: AuthorizedSession, reports: Reports) -> EvaluationScheduled:
    await reports.request_evaluation(session)
    return EvaluationScheduled(session_id=session.id)


@router.delete(
    "/{session_id:session}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={
        **error_responses(
            *SESSION_STATUSES,
            descriptions={
                503: "Nothing was erased (database_unavailable, session_busy): retry after "
                "Retry-After seconds."
            },
        ),
        204: {"description": "Erased: the interview and everything stored of it are gone."},
    },
    description="Erase the interview (the candidate's right to erasure): its transcript, "
    "report and events are deleted on every instance; a live interview is ended first and its "
    "voice call hung up. Afterwards every route of the session answers 404, this one included "
    "(a retry after a lost 204 gets 404: the interview is gone either way).",
)
async def erase(
    session: AuthorizedSession, runtime: Annotated[Runtime, Depends(get_runtime)]
) -> Response:
    if not await runtime.erasure.erase(session.id):
        raise SessionNotFound(session.id)  # erased meanwhile by another request
    return Response(status_code=status.HTTP_204_NO_CONTENT)
