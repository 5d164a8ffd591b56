"""The interview's vocabulary: the states and kinds a session, a turn and a report take.

One set of enums for the database columns, the domain's rules, the API's schemas and the live
events, so a value renamed here is renamed everywhere (and /openapi.json, from which the web
client's types are generated, says so too).
"""

from __future__ import annotations

from enum import StrEnum


class SessionStatus(StrEnum):
    created = "created"
    active = "active"
    ended = "ended"
    expired = "expired"
    failed = "failed"


# A session in these states may still be answered and spoken in.
OPEN_STATUSES = frozenset({SessionStatus.created, SessionStatus.active})
# An interview that reached one of these is over: its report is written, its call hung up.
ENDED_STATUSES = frozenset({SessionStatus.ended, SessionStatus.expired})


class EndReason(StrEnum):
    candidate = "candidate"
    timeout = "timeout"
    plan_finished = "plan_finished"


class ConnectionState(StrEnum):
    """The session's voice connection, as the service last recorded it."""

    none = "none"
    connecting = "connecting"
    connected = "connected"
    disconnected = "disconnected"
    closed = "closed"


class Role(StrEnum):
    interviewer = "interviewer"
    candidate = "candidate"


class TurnKind(StrEnum):
    """What a turn does: the interviewer's moves, or the candidate's answer."""

    question = "question"
    follow_up = "follow_up"
    close = "close"
    answer = "answer"
    # A gentle word after a long silence (voice only): it moves the interview nowhere.
    check_in = "check_in"
    # A line the candidate cut, said again: it moves the interview nowhere either.
    repeat = "repeat"


class Interruption(StrEnum):
    """Why an interviewer line was not heard whole."""

    # The candidate spoke over it: the line stands as far as it was played.
    barge_in = "barge_in"
    # The candidate had not finished their answer: the line is withdrawn (kept for the record,
    # not counted as said) and the answer goes on.
    withdrawn = "withdrawn"


class TurnSource(StrEnum):
    """How a turn was given: typed (or not yet heard), or spoken."""

    text = "text"
    voice = "voice"


class ReportStatus(StrEnum):
    pending = "pending"
    ready = "ready"
    failed = "failed"


class Transcription(StrEnum):
    """Which pass a candidate turn's text comes from."""

    # Typed in text mode: exact, nothing to transcribe.
    typed = "typed"
    # The live pass's text, which drove the conversation; the accurate pass is still to come.
    live = "live"
    # The accurate pass replaced the live text (kept as the turn's draft).
    accurate = "accurate"
    # The live text stands, flagged: the accurate pass failed, timed out, lost its audio, or is
    # not configured (the turn's transcription_note says which).
    live_only = "live_only"


class PassState(StrEnum):
    """Where one kept stretch of answer audio stands in the accurate pass."""

    pending = "pending"
    done = "done"
    failed = "failed"
