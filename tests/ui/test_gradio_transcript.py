"""What the Gradio page shows of the transcript and of who is speaking: a line the candidate cut,
a withdrawn line, a check-in, and the status line for each of the interviewer's speaking states.
The page rendering them in Chromium is tests/e2e/test_interrupted_lines_ui.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from interview.domain import Interruption, Role, TurnKind, TurnSource
from interview.events import (
    CandidateChanged,
    CandidateState,
    Event,
    InterviewerSpeaking,
    SessionEvent,
    SpeakingState,
    TurnCommitted,
)
from interview.store import TurnRow
from ui.gradio_app import spoken_activity, transcript_message

AT = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
WHOLE = "Tell me about a project you are proud of, and what you would change."


def turn(index: int, text: str, **extra: object) -> TurnRow:
    interviewer = index % 2 == 0
    return TurnRow(
        session_id="s1",
        index=index,
        role=Role.interviewer if interviewer else Role.candidate,
        kind=extra.pop("kind", TurnKind.question if interviewer else TurnKind.answer),
        text=text,
        source=TurnSource.voice,
        question_index=0,
        started_at=AT,
        ended_at=AT,
        **extra,
    )


def history(*bodies: SessionEvent) -> list[Event]:
    return [Event(id=i, session_id="s1", body=body) for i, body in enumerate(bodies, start=1)]


def test_lines_heard_whole_and_answers_are_shown_as_they_are() -> None:
    assert transcript_message(turn(0, "Hello, welcome.")) == {
        "role": "assistant",
        "content": "Hello, welcome.",
    }
    assert transcript_message(turn(1, "I built a billing service.")) == {
        "role": "user",
        "content": "I built a billing service.",
    }
    # A check-in after a long silence is an ordinary interviewer line.
    check_in = turn(2, "Take your time; tell me when you're ready.", kind=TurnKind.check_in)
    assert transcript_message(check_in) == {
        "role": "assistant",
        "content": "Take your time; tell me when you're ready.",
    }


def test_a_line_cut_by_the_candidate_shows_the_words_played_then_interrupted() -> None:
    cut = turn(
        2,
        "Tell me about a project you are, ",
        interruption=Interruption.barge_in,
        planned_text=WHOLE,
    )
    assert transcript_message(cut) == {
        "role": "assistant",
        "content": "Tell me about a project you are… *(interrupted)*",
    }
    # Nothing of the rest of the line is shown.
    assert "proud" not in transcript_message(cut)["content"]
    nothing_played = turn(2, "", interruption=Interruption.barge_in, planned_text=WHOLE)
    assert transcript_message(nothing_played)["content"] == "… *(interrupted)*"


def test_a_withdrawn_line_is_struck_through_and_marked() -> None:
    withdrawn = turn(4, "How do you debug a failing service?", interruption=Interruption.withdrawn)
    assert transcript_message(withdrawn) == {
        "role": "assistant",
        "content": "~~How do you debug a failing service?~~ *(withdrawn)*",
    }


def test_a_cut_lines_own_markdown_is_shown_as_words() -> None:
    # A "~" or "*" of its own must not end the strike-through or start emphasis.
    odd = turn(4, "Costs ~5 *per* user\n today", interruption=Interruption.withdrawn)
    assert transcript_message(odd)["content"] == (
        "~~Costs \\~5 \\*per\\* user today~~ *(withdrawn)*"
    )


@pytest.mark.parametrize(
    ("state", "shown"),
    [
        (SpeakingState.started, "the interviewer is speaking"),
        (SpeakingState.resumed, "the interviewer is speaking"),
        (SpeakingState.paused, "the interviewer paused: you are speaking"),
        (SpeakingState.interrupted, "the interviewer stopped: you have the floor"),
        (SpeakingState.queued, ""),
    ],
)
def test_the_status_line_follows_the_interviewers_speaking_state(
    state: SpeakingState, shown: str
) -> None:
    events = history(
        InterviewerSpeaking(state=SpeakingState.started), InterviewerSpeaking(state=state)
    )
    assert spoken_activity(events) == shown


def test_a_barge_in_reads_paused_then_the_candidate_then_stopped() -> None:
    events = history(
        InterviewerSpeaking(state=SpeakingState.started),
        InterviewerSpeaking(state=SpeakingState.paused),
    )
    assert "is speaking" not in spoken_activity(events)
    events += history(CandidateChanged(state=CandidateState.speaking))
    assert spoken_activity(events) == "you are speaking"
    events += history(InterviewerSpeaking(state=SpeakingState.interrupted))
    assert spoken_activity(events) == "the interviewer stopped: you have the floor"
    # The committed line ends what the status line says about the speaking.
    events += history(
        TurnCommitted(
            index=2,
            role=Role.interviewer,
            kind=TurnKind.question,
            text="Tell me",
            source=TurnSource.voice,
            question_index=0,
            started_at=AT,
            ended_at=AT,
        )
    )
    assert spoken_activity(events) == ""
