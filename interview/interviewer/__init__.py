"""Interviewers behind one Protocol, and the one place that picks the engine."""

from interview.config import Settings
from interview.interviewer.base import (
    Interviewer,
    InterviewerAction,
    InterviewerReply,
    InterviewState,
    PastTurn,
)
from interview.interviewer.scripted import ScriptedInterviewer

__all__ = [
    "InterviewState",
    "Interviewer",
    "InterviewerAction",
    "InterviewerReply",
    "PastTurn",
    "ScriptedInterviewer",
    "build_interviewer",
]


def build_interviewer(settings: Settings) -> Interviewer:
    return ScriptedInterviewer(short_answer_words=settings.short_answer_words)
