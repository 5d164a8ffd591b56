"""Domain and protocol errors mapped to JSON responses, in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from interview.access import SessionNotFound
from interview.api.limits import RateLimited, TooManyStreams
from interview.api.schemas import ErrorBody, ErrorDetail, ErrorResponse
from interview.domain import SessionStatus
from interview.plans import UnknownPlan
from interview.report.writer import InterviewRunning, NotEvaluable
from interview.sessions import IdempotencyKeyReused, InvalidAnswer, SessionClosed
from interview.speech.errors import UnknownVoice
from interview.store.locks import SessionBusy
from interview.voice.errors import (
    AlreadyConnected,
    AtCapacity,
    InvalidCandidate,
    InvalidOffer,
    NoConnection,
    VoiceUnavailable,
)

log = structlog.get_logger(__name__)


class MissingToken(Exception):
    """No bearer token on a session route."""


# One body for an unknown session and for a wrong token, so neither reveals the other.
# RFC 9110 names; Python's HTTPStatus keeps older phrases for some.
_HTTP_CODES = {413: "content_too_large", 422: "unprocessable_content"}

NOT_FOUND_MESSAGE = "No interview session with this id for this token."


def error_response(
    status: int,
    code: str,
    message: str,
    details: Sequence[ErrorDetail] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=ErrorBody(code=code, message=message, details=list(details)))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


# What each error status means, for the routes' `responses=` (one place): /openapi.json then
# documents every status a route can return, with the error body and headers it carries.
_ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The body is not valid JSON (malformed_json).",
    401: "No bearer token (unauthorized).",
    404: "Unknown session or wrong token (session_not_found).",
    408: "The body did not arrive within REQUEST_BODY_TIMEOUT_SECONDS (request_timeout).",
    409: "The interview has ended (session_closed, session_expired).",
    413: "The body is larger than MAX_REQUEST_BYTES (content_too_large).",
    422: "The request is not valid (invalid_request: see `details`; unstorable_input).",
    431: "The request's headers are larger than MAX_HEADER_BYTES in all "
    "(request_header_fields_too_large).",
    429: "Too many such requests from this client (rate_limited): retry after Retry-After seconds.",
    503: "Nothing was changed: the database is unavailable (database_unavailable) or another "
    "request holds the interview (session_busy). Retry after Retry-After seconds.",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 0},
    }
}
# The statuses of every session route (422: a session id not of the documented form), and of
# every route with a JSON body.
SESSION_STATUSES = (401, 404, 422, 503)
BODY_STATUSES = (400, 408, 413, 422)


def error_responses(
    *statuses: int, descriptions: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for these error statuses: the ErrorResponse body, the usual description
    unless `descriptions` gives the route's own, and Retry-After where a retry is invited."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description = (descriptions or {}).get(status) or _ERROR_DESCRIPTIONS[status]
        entry: dict[str, Any] = {"model": ErrorResponse, "description": description}
        if status in (429, 503):
            entry["headers"] = _RETRY_AFTER
        responses[status] = entry
    return responses


# The methods a route may serve, probed in this order for a 405's Allow header.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """The methods the app serves at this request's path, asked of its routes themselves (so
    routes added anywhere count, through any router): what a 405's Allow header must list."""
    allowed = []
    for method in _METHODS:
        # A copy per probe: routers may note what they match in the scope.
        scope = {**request.scope, "method": method}
        if isinstance(scope.get("fastapi"), dict):
            scope["fastapi"] = dict(scope["fastapi"])
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


def _validation_details(errors: Sequence[Any]) -> list[ErrorDetail]:
    details = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ()) if part != "body"]
        details.append(ErrorDetail(field=".".join(loc) or None, message=err.get("msg", "invalid")))
    return details


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MissingToken)
    async def _missing_token(_r: Request, _e: MissingToken) -> JSONResponse:
        return error_response(
            401,
            "unauthorized",
            "This route needs 'Authorization: Bearer <token>' with the token from /start.",
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(SessionNotFound)
    async def _not_found(_r: Request, _e: SessionNotFound) -> JSONResponse:
        return error_response(404, "session_not_found", NOT_FOUND_MESSAGE)

    @app.exception_handler(SessionClosed)
    async def _closed(_r: Request, e: SessionClosed) -> JSONResponse:
        # Its own code when the time ran out, so a client need not read the message.
        code = "session_expired" if e.status == SessionStatus.expired else "session_closed"
        return error_response(409, code, f"The interview has {e.status}.")

    @app.exception_handler(InterviewRunning)
    async def _running(_r: Request, _e: InterviewRunning) -> JSONResponse:
        return error_response(
            409, "interview_running", "Results are available once the interview has ended."
        )

    @app.exception_handler(InvalidAnswer)
    async def _invalid_answer(_r: Request, e: InvalidAnswer) -> JSONResponse:
        return error_response(
            422, "invalid_answer", str(e), [ErrorDetail(field="text", message=str(e))]
        )

    @app.exception_handler(IdempotencyKeyReused)
    async def _key_reused(_r: Request, e: IdempotencyKeyReused) -> JSONResponse:
        return error_response(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was already used for another answer; make a new one for "
            "each answer.",
            [ErrorDetail(field="Idempotency-Key", message=str(e))],
        )

    @app.exception_handler(SessionBusy)
    async def _busy(_r: Request, _e: SessionBusy) -> JSONResponse:
        return error_response(
            503,
            "session_busy",
            "Another request for this interview is taking long; nothing was changed. Retry.",
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(UnknownPlan)
    async def _unknown_plan(_r: Request, e: UnknownPlan) -> JSONResponse:
        message = f"Unknown plan_id {e.plan_id!r}; valid plans: {', '.join(e.valid)}."
        return error_response(
            422, "unknown_plan", message, [ErrorDetail(field="plan_id", message=message)]
        )

    @app.exception_handler(UnknownVoice)
    async def _unknown_voice(_r: Request, e: UnknownVoice) -> JSONResponse:
        if e.valid is None:  # no speech engine loaded: only the name's form was checked
            message = (
                f"Invalid voice {e.voice!r}; a voice is named like 'af_heart' (two lowercase "
                "letters, '_', then lowercase letters or digits)."
            )
        else:
            message = f"Unknown voice {e.voice!r}; valid voices: {', '.join(e.valid)}."
        return error_response(
            422, "unknown_voice", message, [ErrorDetail(field="voice", message=message)]
        )

    @app.exception_handler(VoiceUnavailable)
    async def _voice_unavailable(_r: Request, e: VoiceUnavailable) -> JSONResponse:
        return error_response(
            503,
            f"voice_{e.state}",
            f"Voice interviews are unavailable ({e.state}): {e.detail}. Text mode still works.",
            headers={"Retry-After": "5"} if e.state == "loading" else None,
        )

    @app.exception_handler(AtCapacity)
    async def _at_capacity(_r: Request, e: AtCapacity) -> JSONResponse:
        return error_response(
            503,
            "at_capacity",
            f"The server is at capacity ({e.limit} voice interviews). Retry shortly, or answer "
            "in text mode meanwhile: the session stays usable.",
            headers={"Retry-After": "10"},
        )

    @app.exception_handler(InvalidOffer)
    async def _invalid_offer(_r: Request, e: InvalidOffer) -> JSONResponse:
        return error_response(400, "invalid_offer", str(e))

    @app.exception_handler(InvalidCandidate)
    async def _invalid_candidate(_r: Request, e: InvalidCandidate) -> JSONResponse:
        return error_response(400, "invalid_candidate", str(e))

    @app.exception_handler(AlreadyConnected)
    async def _already_connected(_r: Request, _e: AlreadyConnected) -> JSONResponse:
        return error_response(
            409, "already_connected", "This session already has a live voice connection."
        )

    @app.exception_handler(NoConnection)
    async def _no_connection(_r: Request, e: NoConnection) -> JSONResponse:
        return error_response(404, "no_connection", str(e).capitalize() + ".")

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_r: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        if any(err.get("type") == "json_invalid" for err in errors):
            return error_response(400, "malformed_json", "The request body is not valid JSON.")
        return error_response(
            422, "invalid_request", "The request is not valid.", _validation_details(errors)
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(e.status_code) or HTTPStatus(e.status_code).phrase.lower().replace(
            " ", "_"
        )
        message = e.detail if isinstance(e.detail, str) else HTTPStatus(e.status_code).phrase
        headers = dict(e.headers or {})
        if e.status_code == 405:
            # Starlette names the methods of the first route of this path only (GET of
            # /transcript, not its POST): list every route's.
            headers["Allow"] = ", ".join(allowed_methods(request)) or headers.get("Allow", "")
        return error_response(e.status_code, code, message, headers=headers)

    @app.exception_handler(NotEvaluable)
    async def _not_evaluable(_r: Request, e: NotEvaluable) -> JSONResponse:
        return error_response(409, e.code, e.message)

    # Limits (interview/api/limits.py): 429 with when to retry.
    @app.exception_handler(RateLimited)
    async def _rate_limited(_r: Request, e: RateLimited) -> JSONResponse:
        what = "new interviews" if e.action == "start" else "answers"
        return error_response(
            429,
            "rate_limited",
            f"Too many {what} from this client ({e.limit}); retry in {e.retry_after} s.",
            headers={"Retry-After": str(e.retry_after)},
        )

    @app.exception_handler(TooManyStreams)
    async def _too_many_streams(_r: Request, e: TooManyStreams) -> JSONResponse:
        return error_response(
            429,
            "too_many_streams",
            f"This interview already has {e.limit} open event streams; close one, or retry in "
            f"{e.retry_after} s.",
            headers={"Retry-After": str(e.retry_after)},
        )

    @app.exception_handler(DataError)
    async def _unstorable(_r: Request, _e: DataError) -> JSONResponse:
        log.warning("unstorable_input")
        return error_response(
            422, "unstorable_input", "The request holds a value the database cannot store."
        )

    @app.exception_handler(UnicodeEncodeError)
    @app.exception_handler(OverflowError)
    async def _unencodable(_r: Request, e: Exception) -> JSONResponse:
        # The second line behind the schemas: a driver that cannot encode a value (sqlite3 and
        # psycopg raise these themselves, not as SQLAlchemy errors) means bad input, not a 500.
        log.warning("unstorable_input", error=type(e).__name__)
        return error_response(
            422, "unstorable_input", "The request holds a value the database cannot store."
        )

    @app.exception_handler(IntegrityError)
    async def _conflict(_r: Request, _e: IntegrityError) -> JSONResponse:
        # Two writers raced on one session (e.g. the same turn index); nothing was lost.
        log.warning("write_conflict")
        return error_response(
            409, "conflict", "Another request changed this interview at the same time; retry."
        )

    @app.exception_handler(SQLAlchemyError)
    async def _database(_r: Request, _e: SQLAlchemyError) -> JSONResponse:
        log.exception("database_error")
        return error_response(
            503,
            "database_unavailable",
            "The interview database is unavailable; try again shortly.",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(_r: Request, _e: Exception) -> JSONResponse:
        log.exception("unhandled_error")
        return error_response(500, "internal_error", "Something went wrong on our side.")
