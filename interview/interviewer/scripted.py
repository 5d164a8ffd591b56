"""The offline interviewer: follows the plan's script, needs no network and no key."""

from __future__ import annotations

import re

from interview.config import InterviewerEngine
from interview.interviewer.base import (
    LINE_COMPLETE,
    InterviewerAction,
    InterviewerReply,
    InterviewState,
    PastTurn,
    TextSink,
)
from interview.plans import InterviewPlan

# What a candidate says when they did not catch the question.
_ASKS_TO_REPEAT = re.compile(
    r"\b(repeat|again|pardon|come again|say that|didn'?t (catch|hear|get)|missed (it|that))\b",
    re.IGNORECASE,
)

_ACKNOWLEDGEMENTS = (
    "Thank you.",
    "Thanks, that's helpful.",
    "Got it, thank you.",
    "I see, thanks.",
)
_OUT_OF_TIME = "We're out of time, so let's stop here."


class ScriptedInterviewer:
    """Asks each question in order, follows up on very short answers, closes at the end.

    It also closes early once the plan's time budget is spent, so a slow interview still ends
    with the closing line rather than by expiry.
    """

    engine = InterviewerEngine.scripted

    def __init__(self, short_answer_words: int = 8) -> None:
        self.short_answer_words = short_answer_words

    async def opening(self, state: InterviewState) -> InterviewerReply:
        first = state.plan.questions[0]
        return InterviewerReply(
            text=f"{state.plan.greeting} {first.text}",
            action=InterviewerAction.question,
            question_index=0,
            follow_ups_used=0,
        )

    def anticipate(self, state: InterviewState) -> list[str]:
        plan = state.plan
        question = plan.questions[state.question_index]
        lines = []
        if state.follow_ups_used < len(question.follow_ups):
            lines.append(question.follow_ups[state.follow_ups_used])
        ack = _ACKNOWLEDGEMENTS[state.question_index % len(_ACKNOWLEDGEMENTS)]
        next_index = state.question_index + 1
        if next_index < len(plan.questions):
            lines.append(f"{ack} {plan.questions[next_index].text}")
        else:
            lines.append(f"{ack} {plan.closing}")
        return lines

    async def reply(
        self, state: InterviewState, answer: str, on_text: TextSink | None = None
    ) -> InterviewerReply:
        reply = self.decide(state, answer)
        if on_text is not None:
            on_text(reply.text)
            on_text(LINE_COMPLETE)
        return reply

    def fixed_lines(self, plan: InterviewPlan) -> list[str]:
        lines = [f"{plan.greeting} {plan.questions[0].text}", plan.closing, _OUT_OF_TIME]
        lines.append(f"{_OUT_OF_TIME} {plan.closing}")
        for question in plan.questions:
            lines.append(question.text)
            lines.extend(question.follow_ups)
        for ack in _ACKNOWLEDGEMENTS:
            lines.append(f"{ack} {plan.closing}")
            lines.extend(f"{ack} {question.text}" for question in plan.questions[1:])
        return lines

    def decide(self, state: InterviewState, answer: str) -> InterviewerReply:
        cut = _cut_line(state)
        if cut is not None and (_ASKS_TO_REPEAT.search(answer) or not cut.text.strip()):
            # "Sorry, could you repeat that?" over the question: say it again, whole.
            return InterviewerReply(
                text=f"Of course. {cut.planned_text or cut.text}",
                action=InterviewerAction.repeat,
                question_index=state.question_index,
                follow_ups_used=state.follow_ups_used,
            )
        plan = state.plan
        question = plan.questions[state.question_index]
        over_time = state.elapsed_seconds >= plan.time_budget_minutes * 60
        thin = len(answer.split()) < self.short_answer_words
        if not over_time and thin and state.follow_ups_used < len(question.follow_ups):
            return InterviewerReply(
                text=question.follow_ups[state.follow_ups_used],
                action=InterviewerAction.follow_up,
                question_index=state.question_index,
                follow_ups_used=state.follow_ups_used + 1,
            )
        ack = _ACKNOWLEDGEMENTS[state.question_index % len(_ACKNOWLEDGEMENTS)]
        next_index = state.question_index + 1
        if over_time or next_index >= len(plan.questions):
            lead = _OUT_OF_TIME if over_time else ack
            return InterviewerReply(
                text=f"{lead} {plan.closing}",
                action=InterviewerAction.close,
                question_index=state.question_index,
                follow_ups_used=state.follow_ups_used,
            )
        return InterviewerReply(
            text=f"{ack} {plan.questions[next_index].text}",
            action=InterviewerAction.question,
            question_index=next_index,
            follow_ups_used=0,
        )


def _cut_line(state: InterviewState) -> PastTurn | None:
    """The interviewer's line just before the answer, if the candidate cut it."""
    for turn in reversed(state.history):
        if turn.role == "interviewer":
            return turn if turn.interrupted else None
    return None
