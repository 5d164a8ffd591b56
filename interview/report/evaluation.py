"""The evaluation of an ended interview by a language model, checked before it is trusted.

The model's answer is a forced tool call validated against a schema fixed by the plan. Then
every claim that can be checked is: each plan competency scored once, scores on the plan's
scale, competencies without an answered question marked "not assessed" whatever the model
said, and every evidence quote looked up in the candidate's own words (a quote that is not
there is dropped and flagged). An answer that fails the checks is retried; after the last
attempt the evaluation fails with the reason, and the report is stored as failed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Literal

import httpx
import openai
import structlog
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, ConfigDict, ValidationError

from interview.config import Settings
from interview.openai_client import async_client, describe_failure
from interview.plans import InterviewPlan
from interview.report.evaluation_prompt import (
    TOOL_NAME,
    build_messages,
    evaluation_tool,
    tool_choice,
)
from interview.report.models import (
    CompetencyScore,
    Evaluation,
    Evidence,
    FlaggedQuote,
    QuestionReport,
    Scale,
)
from interview.report.quotes import find_quote
from interview.store import TurnRow

log = structlog.get_logger(__name__)

NOT_ASSESSED = "Not assessed: no question on this competency was answered."


class EvaluationFailed(Exception):
    """No valid evaluation within the attempts; the message says why, without secrets."""


class InvalidEvaluation(ValueError):
    pass


class _RawCompetency(BaseModel):
    model_config = ConfigDict(extra="forbid")

    competency_id: str
    score: int | None
    justification: str
    evidence: list[str]


class _RawEvaluation(BaseModel):
    """What the model must send, exactly; anything else is a failed attempt."""

    model_config = ConfigDict(extra="forbid")

    competencies: list[_RawCompetency]
    strengths: list[str]
    concerns: list[str]
    recommendation: Literal["strong_yes", "yes", "no", "strong_no"]
    confidence: Literal["low", "medium", "high"]
    summary: str


class LLMEvaluator:
    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        timeout_seconds: float,
        max_attempts: int,
        retry_pause: float = 2.0,
        temperature: float | None = None,
    ) -> None:
        self.temperature = temperature
        self.retry_pause = retry_pause
        self.client = client
        self.model = model
        self.timeout_seconds = timeout_seconds
        self.max_attempts = max_attempts

    async def evaluate(
        self,
        plan: InterviewPlan,
        questions: Sequence[QuestionReport],
        turns: Sequence[TurnRow],
        session_id: str | None = None,
    ) -> Evaluation:
        messages = build_messages(plan, questions, turns)
        failures: list[str] = []
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with asyncio.timeout(self.timeout_seconds):
                    raw = await self._ask(plan, messages)
                return check(raw, plan, questions, turns, self.model)
            except (openai.APIError, httpx.HTTPError, TimeoutError, InvalidEvaluation) as exc:
                reason = (
                    f"invalid evaluation: {exc}"
                    if isinstance(exc, InvalidEvaluation)
                    else describe_failure(exc)
                )
                failures.append(reason)
                log.warning(
                    "evaluation_attempt_failed",
                    session_id=session_id,
                    attempt=attempt,
                    reason=reason,
                )
                if attempt < self.max_attempts:
                    await asyncio.sleep(min(self.retry_pause * attempt, 10.0))
        raise EvaluationFailed(
            f"the evaluation failed after {self.max_attempts} attempts: " + "; ".join(failures)
        )

    async def _ask(
        self, plan: InterviewPlan, messages: list[ChatCompletionMessageParam]
    ) -> _RawEvaluation:
        completion = await self.client.chat.completions.create(
            model=self.model,
            messages=messages,
            tools=[evaluation_tool(plan)],
            tool_choice=tool_choice(),
            # omit: no temperature is sent at all, and the server uses its own default.
            temperature=openai.omit if self.temperature is None else self.temperature,
        )
        try:
            calls = [
                call
                for choice in completion.choices[:1]
                for call in choice.message.tool_calls or ()
                if call.type == "function" and call.function.name == TOOL_NAME
            ]
        except (TypeError, AttributeError):
            # The SDK does not validate answers: a proxy's HTML page arrives as a str, a
            # merely "compatible" server's chunk may lack choices or their message.
            raise InvalidEvaluation("the answer is not a chat completion") from None
        if not calls:
            raise InvalidEvaluation(f"the model did not call {TOOL_NAME}")
        try:
            return _RawEvaluation.model_validate(json.loads(calls[0].function.arguments))
        except json.JSONDecodeError as exc:
            raise InvalidEvaluation(f"arguments are not valid JSON ({exc.msg})") from None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                for e in exc.errors(include_input=False, include_url=False)[:5]
            )
            raise InvalidEvaluation(problems) from None


def check(
    raw: _RawEvaluation,
    plan: InterviewPlan,
    questions: Sequence[QuestionReport],
    turns: Sequence[TurnRow],
    model: str,
) -> Evaluation:
    """The model's evaluation, with every checkable claim checked (see the module docstring)."""
    by_id: dict[str, _RawCompetency] = {}
    for entry in raw.competencies:
        if entry.competency_id in by_id:
            raise InvalidEvaluation(f"competency {entry.competency_id!r} is scored twice")
        by_id[entry.competency_id] = entry
    unknown = set(by_id) - {c.id for c in plan.competencies}
    if unknown:
        raise InvalidEvaluation(f"unknown competencies {sorted(unknown)}")
    answered = {q.competency for q in questions if q.answered}
    candidate_turns = [(t.index, t.text) for t in turns if t.role == "candidate"]
    scores: list[CompetencyScore] = []
    flagged: list[FlaggedQuote] = []
    for competency in plan.competencies:
        item = by_id.get(competency.id)
        if competency.id not in answered:
            # Nothing the candidate said was asked about it: a score would be invented.
            scores.append(
                CompetencyScore(
                    id=competency.id,
                    name=competency.name,
                    assessed=False,
                    score=None,
                    justification=NOT_ASSESSED,
                    evidence=[],
                )
            )
            continue
        if item is None:
            raise InvalidEvaluation(f"competency {competency.id!r} is missing")
        if item.score is not None and not plan.scale.min <= item.score <= plan.scale.max:
            raise InvalidEvaluation(
                f"score {item.score} for {competency.id!r} is outside "
                f"{plan.scale.min}-{plan.scale.max}"
            )
        evidence: list[Evidence] = []
        for quote in item.evidence:
            match = find_quote(quote, candidate_turns)
            if match is None:
                flagged.append(
                    FlaggedQuote(
                        competency=competency.id,
                        quote=quote,
                        reason="not found word for word in the candidate's answers",
                    )
                )
            else:
                evidence.append(Evidence(quote=match.text, turn_index=match.turn_index))
        scores.append(
            CompetencyScore(
                id=competency.id,
                name=competency.name,
                assessed=item.score is not None,
                score=item.score,
                justification=item.justification.strip(),
                evidence=evidence,
            )
        )
    return Evaluation(
        model=model,
        scale=Scale(min=plan.scale.min, max=plan.scale.max),
        competencies=scores,
        strengths=[s.strip() for s in raw.strengths if s.strip()],
        concerns=[c.strip() for c in raw.concerns if c.strip()],
        recommendation=raw.recommendation,
        confidence=raw.confidence,
        summary=raw.summary.strip(),
        flagged_quotes=flagged,
    )


def build_evaluator(settings: Settings) -> LLMEvaluator | None:
    """The evaluator when a language model is configured for reports; None offline."""
    if not settings.evaluation_enabled:
        return None
    return LLMEvaluator(
        async_client(settings, timeout=settings.evaluation_timeout_seconds),
        model=settings.evaluation_model,
        timeout_seconds=settings.evaluation_timeout_seconds,
        max_attempts=settings.evaluation_max_attempts,
        temperature=settings.openai_temperature,
    )
