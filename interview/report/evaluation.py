"""The evaluation of an ended interview by a language model, checked before it is trusted.

The model's answer is a forced tool call validated against a schema fixed by the plan. Then
every claim that can be checked is: each plan competency scored once, scores on the plan's
scale, competencies without an answered question marked "not assessed" whatever the model
said, and every evidence quote looked up in the candidate's own words (a quote that is not
there is dropped and flagged). Any failed attempt (an HTTP error, a timeout, a body that is not
a chat completion, an answer that fails the checks) is retried; after the last attempt the
evaluation fails with the reasons, which name what went wrong but never quote the server, the
model's words or the candidate's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Literal

import httpx2
import openai
import structlog
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam
from pydantic import BaseModel, ConfigDict, ValidationError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from interview.config import Settings
from interview.openai_client import ATTEMPT_FAILURES, async_client, describe_failure
from interview.openai_client import retry_after as openai_retry_after
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
from interview.report.quotes import find_quote, said_at
from interview.store import TurnRow

log = structlog.get_logger(__name__)

NOT_ASSESSED = "Not assessed: no question on this competency was answered."

# The pause before another attempt grows with each failure, up to this.
MAX_PAUSE_SECONDS = 10.0
# A 429's Retry-After is waited for up to this long: a longer wait is the background retry's job
# (interview/report/writer.py), not this report's.
MAX_RETRY_AFTER_SECONDS = 30.0


class EvaluationFailed(Exception):
    """No valid evaluation within the attempts; the message says why, without secrets."""


class InvalidEvaluation(ValueError):
    """The model answered, but not with an evaluation that holds."""


class UnreadableAnswer(ValueError):
    """The server's answer is not a chat completion (a proxy's page, another JSON shape)."""


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

        async def attempt() -> Evaluation:
            try:
                async with asyncio.timeout(self.timeout_seconds):
                    raw = await self._ask(plan, messages)
                return check(raw, plan, questions, turns, self.model)
            except ATTEMPT_FAILURES as exc:
                reason = describe(exc)
                failures.append(reason)
                log.warning(
                    "evaluation_attempt_failed",
                    session_id=session_id,
                    attempt=len(failures),
                    reason=reason,
                )
                raise

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._pause,
            retry=retry_if_exception_type(ATTEMPT_FAILURES),
            reraise=True,
        )
        try:
            return await retrying(attempt)
        except ATTEMPT_FAILURES:
            attempts = f"{len(failures)} attempt" + ("s" if len(failures) != 1 else "")
            raise EvaluationFailed(
                f"the evaluation failed after {attempts}: " + "; ".join(failures)
            ) from None

    def _pause(self, state: RetryCallState) -> float:
        """Before the next attempt: what a 429 asked for (bounded), else a growing pause."""
        failure = state.outcome.exception() if state.outcome is not None else None
        asked = retry_after(failure) if failure is not None else None
        if asked is not None:
            return asked
        return min(self.retry_pause * state.attempt_number, MAX_PAUSE_SECONDS)

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
            raise UnreadableAnswer("not a chat completion") from None
        if not calls:
            raise InvalidEvaluation(f"the model did not call {TOOL_NAME}")
        try:
            return _RawEvaluation.model_validate(json.loads(calls[0].function.arguments))
        except json.JSONDecodeError as exc:
            raise InvalidEvaluation(f"arguments are not valid JSON ({exc.msg})") from None
        except ValidationError as exc:
            problems = "; ".join(
                f"{_where(e['loc'])}: {e['msg']}"
                for e in exc.errors(include_input=False, include_url=False)[:5]
            )
            raise InvalidEvaluation(problems) from None


# The field names the model is asked for: any other key it sends is named by its place only,
# since a key, like a value, may hold its words or the candidate's.
_KNOWN_FIELDS = set(_RawEvaluation.model_fields) | set(_RawCompetency.model_fields)


def _where(loc: Sequence[int | str]) -> str:
    return ".".join(
        str(p) if isinstance(p, int) or p in _KNOWN_FIELDS else "(another field)" for p in loc
    )


def describe(exc: BaseException) -> str:
    """Why an attempt failed, in words that hold no secret and no text of the interview."""
    if isinstance(exc, InvalidEvaluation):
        return f"invalid evaluation: {exc}"
    if isinstance(exc, UnreadableAnswer):
        return f"unreadable answer: {exc}"
    if isinstance(exc, json.JSONDecodeError):
        return "unreadable answer: not JSON"
    if isinstance(exc, openai.OpenAIError | httpx2.HTTPError | TimeoutError):
        return describe_failure(exc)
    return f"unreadable answer ({type(exc).__name__})"


def retry_after(exc: BaseException) -> float | None:
    """The seconds an HTTP error's Retry-After asks to wait, at most MAX_RETRY_AFTER_SECONDS;
    None when it asks nothing readable."""
    asked = openai_retry_after(exc)
    return None if asked is None else min(asked, MAX_RETRY_AFTER_SECONDS)


def check(
    raw: _RawEvaluation,
    plan: InterviewPlan,
    questions: Sequence[QuestionReport],
    turns: Sequence[TurnRow],
    model: str,
) -> Evaluation:
    """The model's evaluation, with every checkable claim checked (see the module docstring)."""
    known = {c.id for c in plan.competencies}
    by_id: dict[str, _RawCompetency] = {}
    for entry in raw.competencies:
        if entry.competency_id not in known:
            # Not named: an id the plan does not have is the model's text, not the plan's.
            unknown = sum(e.competency_id not in known for e in raw.competencies)
            raise InvalidEvaluation(f"{unknown} unknown competencies")
        if entry.competency_id in by_id:
            raise InvalidEvaluation(f"competency {entry.competency_id!r} is scored twice")
        by_id[entry.competency_id] = entry
    answered = {q.competency for q in questions if q.answered}
    candidate_turns = [(t.index, t.text) for t in turns if t.role == "candidate"]
    timings = {t.index: (t.text, t.words) for t in turns if t.role == "candidate"}
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
                text, words = timings[match.turn_index]
                evidence.append(
                    Evidence(
                        quote=match.text,
                        turn_index=match.turn_index,
                        at_seconds=said_at(text, words, match.start),
                    )
                )
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
