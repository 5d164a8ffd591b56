"""Interviewers behind one Protocol, and the one place that picks the engine."""

from interview.config import InterviewerEngine, Settings
from interview.interviewer.base import (
    LINE_COMPLETE,
    Interviewer,
    InterviewerAction,
    InterviewerReply,
    InterviewState,
    PastTurn,
    TextSink,
)
from interview.interviewer.scripted import ScriptedInterviewer

__all__ = [
    "LINE_COMPLETE",
    "InterviewState",
    "Interviewer",
    "InterviewerAction",
    "InterviewerReply",
    "PastTurn",
    "ScriptedInterviewer",
    "TextSink",
    "build_interviewer",
]


def build_interviewer(settings: Settings) -> Interviewer:
    scripted = ScriptedInterviewer(short_answer_words=settings.short_answer_words)
    if settings.interviewer_engine is InterviewerEngine.scripted:
        return scripted
    # Imported here so the offline default never loads the OpenAI SDK.
    from interview.interviewer.llm import LLMInterviewer
    from interview.openai_client import async_client

    return LLMInterviewer(
        async_client(settings, timeout=settings.llm_turn_budget_seconds),
        model=settings.openai_model,
        fallback=scripted,
        budget_seconds=settings.llm_turn_budget_seconds,
        max_attempts=settings.llm_max_attempts,
        temperature=settings.openai_temperature,
    )
