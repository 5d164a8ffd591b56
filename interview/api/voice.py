"""WebRTC signaling and live events of a session: thin routes over interview.voice (which relays
the signaling to the instance holding the session's call)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

from interview.api.errors import (
    BODY_STATUSES,
    SESSION_STATUSES,
    error_response,
    error_responses,
)
from interview.api.limits import Limits, get_limits
from interview.api.routes import AuthorizedSession, Service, Voice, get_runtime
from interview.api.schemas import (
    IceCandidateRequest,
    IceCandidateResponse,
    RtcDescription,
    RtcOfferRequest,
)
from interview.api.streams import SessionEvent, event_stream_responses
from interview.runtime import Runtime
from interview.voice.errors import OwnerUnreachable

# Any request, on any route, may have headers too large.
router = APIRouter(responses=error_responses(431))

_RTC_DESCRIPTIONS = {
    400: "The body is not valid JSON (malformed_json); malformed SDP, no audio, or no data "
    "channel (invalid_offer); a malformed candidate (invalid_candidate).",
    404: "Unknown session or wrong token (session_not_found); no offer made yet (no_connection).",
    409: "Ended (session_closed, session_expired), or already connected (already_connected).",
    503: "Voice is disabled, loading or failed (voice_disabled, voice_loading, voice_failed), "
    "at capacity (at_capacity), the instance holding the session's call did not answer in "
    "time (owner_unreachable), the database is unavailable or the session busy; retry after "
    "Retry-After seconds where given.",
}
# Every rtc route: a body (but /rtc/answer's) and a session.
_RTC_ERRORS = error_responses(*SESSION_STATUSES, 409, descriptions=_RTC_DESCRIPTIONS)
_RTC_BODY_ERRORS = error_responses(
    *SESSION_STATUSES, *BODY_STATUSES, 409, descriptions=_RTC_DESCRIPTIONS
)
# Event ids are PostgreSQL bigints (interview/store/tables.py).
EVENT_ID_MAX = 2**63 - 1
# The client resumes a cut stream after this many milliseconds.
RECONNECT_MS = 1000
# After an `owner_unreachable` 503: by then a hung instance has answered or is known dead.
OWNER_RETRY_AFTER_SECONDS = 2


def owner_unreachable(exc: OwnerUnreachable) -> JSONResponse:
    """The 503 for a request the session's owner (another instance) did not answer."""
    return error_response(
        503,
        "owner_unreachable",
        f"The server holding this session's voice connection did not answer ({exc.detail}); "
        "retry shortly.",
        headers={"Retry-After": str(OWNER_RETRY_AFTER_SECONDS)},
    )


@router.post(
    "/{session_id}/rtc/offer",
    response_model=RtcDescription,
    responses=_RTC_BODY_ERRORS,
    description="Send the browser's offer; get the server's answer. The offer must carry the "
    "microphone track and a data channel (create it before createOffer).",
)
async def rtc_offer(
    body: RtcOfferRequest, session: AuthorizedSession, service: Service, voice: Voice
) -> RtcDescription | JSONResponse:
    row = await service.open_session(session.id)
    try:
        answer = await voice.offer(row, body.sdp, body.type)
    except OwnerUnreachable as exc:
        return owner_unreachable(exc)
    return RtcDescription(sdp=answer.sdp, type=answer.type)


@router.post(
    "/{session_id}/rtc/answer",
    response_model=RtcDescription,
    responses=_RTC_ERRORS,
    description="The answer to the session's current connection, for a client that lost it.",
)
async def rtc_answer(session: AuthorizedSession, voice: Voice) -> RtcDescription | JSONResponse:
    try:
        answer = await voice.answer(session)
    except OwnerUnreachable as exc:
        return owner_unreachable(exc)
    return RtcDescription(sdp=answer.sdp, type=answer.type)


@router.post(
    "/{session_id}/rtc/ice-candidate",
    response_model=IceCandidateResponse,
    responses=_RTC_BODY_ERRORS,
)
async def rtc_ice_candidate(
    body: IceCandidateRequest, session: AuthorizedSession, voice: Voice
) -> IceCandidateResponse | JSONResponse:
    try:
        await voice.add_ice_candidate(session, body.candidate, body.sdpMid, body.sdpMLineIndex)
    except OwnerUnreachable as exc:
        return owner_unreachable(exc)
    return IceCandidateResponse(status="added")


@router.get(
    "/{session_id}/events",
    response_class=EventSourceResponse,
    response_model=SessionEvent,
    responses={
        **event_stream_responses(SessionEvent, "Server-Sent Events: each `data` is one event."),
        **error_responses(
            *SESSION_STATUSES,
            422,
            429,
            descriptions={
                422: "Last-Event-ID is not an event id.",
                429: "The session has EVENTS_MAX_STREAMS streams open on this server "
                "(too_many_streams): retry after Retry-After seconds (when the oldest ends at "
                "the latest).",
            },
        ),
    },
    description="Live events (turn, status, speaking, candidate, connection, results) as "
    "Server-Sent Events. Each response ends after EVENTS_STREAM_SECONDS (under API Gateway's "
    "30 s limit) or, with EVENTS_DELIVERY=poll (behind a proxy that buffers whole responses), "
    "shortly after its first events; reconnect with the Last-Event-ID header (at once after a "
    "response that carried events) to get exactly what was missed. "
    "Without it, the session's buffered events are replayed from the start.",
)
async def events(
    session: AuthorizedSession,
    runtime: Annotated[Runtime, Depends(get_runtime)],
    limits: Annotated[Limits, Depends(get_limits)],
    last_event_id: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID",
            ge=0,
            le=EVENT_ID_MAX,
            description="The id of the last event received, to resume after it.",
        ),
    ] = None,
) -> EventSourceResponse:
    seconds = runtime.settings.events_stream_seconds
    close_slot = limits.streams.open(session.id)  # TooManyStreams: a 429

    async def stream() -> AsyncIterator[ServerSentEvent]:
        try:
            async with asyncio.timeout(seconds):
                after = last_event_id if last_event_id is not None else -1
                async for event in runtime.events.subscribe(session.id, after_id=after):
                    yield ServerSentEvent(
                        data=event.json(),
                        event=event.type,
                        id=str(event.id),
                        retry=RECONNECT_MS,
                    )
                    if event.type == "results":
                        # The report is there: this stream ends (an evaluation made later
                        # announces itself to a client that asks again with Last-Event-ID).
                        return
        except TimeoutError:
            return

    return _SlotHoldingResponse(stream(), close_slot, ping=10, send_timeout=10)


class _SlotHoldingResponse(EventSourceResponse):
    """An event stream that gives its slot back however it ends: complete, cut by the client
    (even abruptly), or cancelled with the server."""

    def __init__(self, content: Any, close_slot: Callable[[], None], **options: Any) -> None:
        super().__init__(content, **options)
        self._close_slot = close_slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._close_slot()
