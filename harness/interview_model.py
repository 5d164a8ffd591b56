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

FOLLOW_UP = "Could you tell me more about that? What exactly was your part?"
FABRICATED = "I single-handedly rewrote the whole platform in a weekend"
THIN_WORDS = 8

_NEXT = re.compile(r'Next question in the plan \(\d+ of \d+\): "(?P<q>[^"]+)"')
_CANDIDATE = re.compile(r"<candidate_answer>\n(?P<a>.*?)\n</candidate_answer>", re.S)


def respond(body: dict[str, Any]) -> Behaviour:
    tools = body.get("tools") or []
    name = tools[0]["function"]["name"] if tools else None
    if name == "next_turn":
        return ToolCall("next_turn", next_turn(body))
    if name == "submit_evaluation":
        return ToolCall("submit_evaluation", evaluation(body), chunks=1)
    return Fail(400, f"the stand-in model does not know tool {name!r}")


def next_turn(body: dict[str, Any]) -> dict[str, str]:
    allowed = body["tools"][0]["function"]["parameters"]["properties"]["action"]["enum"]
    system = body["messages"][0]["content"]
    last = body["messages"][-1]["content"]
    answer = _CANDIDATE.findall(last)[-1] if _CANDIDATE.search(last) else last
    if "follow_up" in allowed and len(answer.split()) < THIN_WORDS:
        return {"action": "follow_up", "say": FOLLOW_UP}
    if "next_question" in allowed:
        match = _NEXT.search(system)
        question = match["q"] if match else "Let's move on."
        return {"action": "next_question", "say": f"Thank you, that helps. {question}"}
    return {
        "action": "close",
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
