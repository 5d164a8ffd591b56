"""What an interviewer is: given where the interview stands, decide and phrase the next line."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from interview.config import InterviewerEngine
from interview.plans import InterviewPlan


class InterviewerAction(StrEnum):
    question = "question"
    follow_up = "follow_up"
    close = "close"
    # The line the candidate cut, said again (they asked, or heard none of it).
    repeat = "repeat"


@dataclass(frozen=True)
class PastTurn:
    role: str
    text: str
    # An interviewer line the candidate cut: `text` is what they heard of `planned_text`.
    interrupted: bool = False
    planned_text: str | None = None


@dataclass(frozen=True)
class InterviewState:
    """Where the interview stands when the interviewer must speak."""

    plan: InterviewPlan
    question_index: int
    follow_ups_used: int
    elapsed_seconds: float
    history: Sequence[PastTurn] = ()


@dataclass(frozen=True)
class InterviewerReply:
    """The interviewer's next line and the structured decision behind it.

    The decision, not the wording, moves the session's question index, so the index stays
    true whatever the phrasing.
    """

    text: str
    action: InterviewerAction
    question_index: int
    follow_ups_used: int
    # Why this line came from the fallback interviewer instead of the configured one.
    degraded: str | None = None

    @property
    def closes(self) -> bool:
        return self.action is InterviewerAction.close


# Receives the spoken line piece by piece as it is generated, so speech can start before the
# whole line exists. Every piece is final: the reply's text starts with all pieces, in order.
# An empty piece says the line's words are complete, so its last sentence can be spoken before
# the reply itself is (the model's call may still be closing, the reply not yet committed).
TextSink = Callable[[str], None]
LINE_COMPLETE = ""


class Interviewer(Protocol):
    @property
    def engine(self) -> InterviewerEngine:
        """Which interviewer this is: a language model, or the offline script."""
        ...

    async def opening(self, state: InterviewState) -> InterviewerReply:
        """The first line: greeting and first question."""
        ...

    async def reply(
        self, state: InterviewState, answer: str, on_text: TextSink | None = None
    ) -> InterviewerReply:
        """The line that follows the candidate's answer to the current question."""
        ...

    def anticipate(self, state: InterviewState) -> list[str]:
        """Lines likely to come next, so speech for them can be made while the candidate
        answers; an interviewer that cannot know returns []."""
        ...

    def fixed_lines(self, plan: InterviewPlan) -> list[str]:
        """Every line this interviewer may say for `plan` that is known in advance: words of
        the plan and the script, never a candidate's. Only their speech is kept on disk."""
        ...
