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

from interview.api.errors import error_response
from interview.api.limits import Limits, get_limits
from interview.api.routes import AuthorizedSession, Service, Voice, get_runtime
from interview.api.schemas import (
    ErrorResponse,
    IceCandidateRequest,
    IceCandidateResponse,
    RtcDescription,
    RtcOfferRequest,
)
from interview.api.streams import SessionEvent, event_stream_responses
from interview.runtime import Runtime
from interview.voice.errors import OwnerUnreachable

router = APIRouter()

_RTC_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Malformed SDP, no audio, or no data channel."},
    401: {"model": ErrorResponse, "description": "No bearer token."},
    404: {"model": ErrorResponse, "description": "Unknown session or wrong token."},
    409: {"model": ErrorResponse, "description": "Ended, or already connected."},
    503: {
        "model": ErrorResponse,
        "description": "At capacity (Retry-After), loading, or the instance holding the "
        "session's call did not answer in time (Retry-After).",
    },
}
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
    responses=_RTC_ERRORS,
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
    responses=_RTC_ERRORS,
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
        429: {
            "model": ErrorResponse,
            "description": "The session has EVENTS_MAX_STREAMS streams open on this server "
            "(Retry-After: when the oldest ends at the latest).",
        },
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
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID")] = None,
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
                        return  # the interview is over: nothing more will come
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
