"""A rule-based stand-in for a chat model, for the fake OpenAI server's `default`.

It answers the two tools the service uses the way a sensible model would, from what the request
actually contains (the tool's allowed actions, the plan's next question in the system prompt,
the transcript), so a whole interview can run against it: a follow-up on a thin answer, the
next question otherwise, a close at the end; and an evaluation whose evidence quotes the
candidate's real words, plus one fabricated quote that the service must flag.
"""

from __future__ import annotations

import re
from typing import Any

from harness.fake_openai import Behaviour, Fail, ToolCall
from interview.config import Settings
from interview.interviewer import prompts
from interview.interviewer.prompts import CANDIDATE_CLOSE, CANDIDATE_OPEN, TurnAction
from interview.report import evaluation_prompt

FOLLOW_UP = "Could you tell me more about that? What exactly was your part?"
FABRICATED = "I single-handedly rewrote the whole platform in a weekend"
# Thin as the scripted interviewer counts it by default (Settings.short_answer_words).
THIN_WORDS: int = Settings.model_fields["short_answer_words"].default


def _line_pattern(template: str, **groups: str) -> re.Pattern[str]:
    """A regex matching what `template.format(...)` makes, with a pattern for each field."""
    pattern = re.escape(template)
    for field, group in groups.items():
        pattern = pattern.replace(re.escape(f"{{{field}}}"), group)
    return re.compile(pattern)


_NEXT = _line_pattern(prompts.NEXT_QUESTION_LINE, number=r"\d+", total=r"\d+", text='(?P<q>[^"]+)')
# candidate_section() puts each answer on lines of its own between the tags.
_CANDIDATE = re.compile(
    rf"{re.escape(CANDIDATE_OPEN)}\n(?P<a>.*?)\n{re.escape(CANDIDATE_CLOSE)}", re.S
)


def respond(body: dict[str, Any]) -> Behaviour:
    tools = body.get("tools") or []
    name = tools[0]["function"]["name"] if tools else None
    if name == prompts.TOOL_NAME:
        turn = next_turn(body)
        return turn if isinstance(turn, Fail) else ToolCall(name, turn)
    if name == evaluation_prompt.TOOL_NAME:
        return ToolCall(name, evaluation(body), chunks=1)
    return Fail(400, f"the stand-in model does not know tool {name!r}")


def next_turn(body: dict[str, Any]) -> dict[str, str] | Fail:
    allowed = body["tools"][0]["function"]["parameters"]["properties"]["action"]["enum"]
    system = body["messages"][0]["content"]
    last = body["messages"][-1]["content"]
    answer = _CANDIDATE.findall(last)[-1] if _CANDIDATE.search(last) else last
    if TurnAction.follow_up in allowed and len(answer.split()) < THIN_WORDS:
        return {"action": TurnAction.follow_up, "say": FOLLOW_UP}
    if TurnAction.next_question in allowed:
        match = _NEXT.search(system)
        if match is None:  # the prompt's wording moved away from prompts.NEXT_QUESTION_LINE
            return Fail(400, "the system prompt names no next question")
        question = match["q"]
        return {"action": TurnAction.next_question, "say": f"Thank you, that helps. {question}"}
    return {
        "action": TurnAction.close,
        "say": "Thank you for your time today. The interview is over, and the team will be "
        "in touch. Goodbye.",
    }


def evaluation(body: dict[str, Any]) -> dict[str, Any]:
    parameters = body["tools"][0]["function"]["parameters"]
    item = parameters["properties"]["competencies"]["items"]["properties"]
    ids = item["competency_id"]["enum"]
    top = item["score"]["maximum"]
    answers = _CANDIDATE.findall(body["messages"][-1]["content"])
    real = " ".join(answers[0].split()[:6]) if answers else ""
    competencies = [
        {
            "competency_id": cid,
            "score": top - 1,
            "justification": "Gave a concrete example with a clear personal contribution.",
            # A real quote, and for the first competency a fabricated one to be flagged.
            "evidence": [real, FABRICATED] if i == 0 else [real],
        }
        for i, cid in enumerate(ids)
    ]
    return {
        "competencies": competencies,
        "strengths": ["Concrete, specific examples."],
        "concerns": ["Little detail on measuring results."],
        "recommendation": "yes",
        "confidence": "medium",
        "summary": "A solid screen with specific examples; worth a second round.",
    }
