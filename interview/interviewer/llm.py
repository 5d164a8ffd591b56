"""The language-model interviewer: an OpenAI chat model (or any OpenAI-compatible server)
conducts the interview from the plan, and the scripted interviewer stands in when it fails.

Each turn is one streamed, forced `next_turn` tool call. Failures (timeout, 429, 5xx, a
malformed call) are retried while the turn's latency budget lasts; after that the scripted
interviewer's line is used so the interview goes on, and the reply says why it is degraded.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import openai
import structlog
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from interview.config import InterviewerEngine
from interview.interviewer.base import (
    LINE_COMPLETE,
    InterviewerReply,
    InterviewState,
    TextSink,
)
from interview.interviewer.prompts import (
    SESSION_ACTION,
    TurnAction,
    allowed_actions,
    build_messages,
    next_turn_tool,
    tool_choice,
)
from interview.interviewer.scripted import ScriptedInterviewer
from interview.interviewer.turn_stream import MalformedTurn, TurnStream, spoken
from interview.openai_client import ATTEMPT_FAILURES, describe_failure, retry_after
from interview.plans import InterviewPlan
from interview.speech.sentences import SENTENCE_END

log = structlog.get_logger(__name__)

# What a retry waits after a failure without Retry-After, doubled per attempt.
FIRST_BACKOFF_SECONDS = 0.25


class LLMInterviewer:
    engine = InterviewerEngine.llm

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        fallback: ScriptedInterviewer,
        budget_seconds: float,
        max_attempts: int,
        temperature: float | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.fallback = fallback
        self.budget_seconds = budget_seconds
        self.max_attempts = max_attempts
        self.temperature = temperature

    async def opening(self, state: InterviewState) -> InterviewerReply:
        # The plan's own greeting and first question: /start answers at once, never waits on
        # (or fails with) the model, and the greeting's speech can be made ahead of time.
        return await self.fallback.opening(state)

    def fixed_lines(self, plan: InterviewPlan) -> list[str]:
        # The model's own lines are not known, and may repeat the candidate's words; the
        # opening and the stand-in lines are the script's.
        return self.fallback.fixed_lines(plan)

    def anticipate(self, state: InterviewState) -> list[str]:
        return []  # the model's words are not known in advance

    async def reply(
        self, state: InterviewState, answer: str, on_text: TextSink | None = None
    ) -> InterviewerReply:
        allowed = allowed_actions(state)
        messages = build_messages(state, answer)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.budget_seconds
        failures: list[str] = []
        for attempt in range(1, self.max_attempts + 1):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            stream = TurnStream(allowed, on_text)
            try:
                action, line = await self._attempt(messages, allowed, stream, deadline)
                return self._reply(state, action, line)
            except ATTEMPT_FAILURES as exc:
                reason = describe(exc)
                failures.append(reason)
                log.warning("llm_turn_failed", attempt=attempt, reason=reason)
                if on_text is not None and stream.emitted and stream.action is not None:
                    # Part of the line is already being spoken: finish on it rather than
                    # contradict it with another line.
                    return self._reply(
                        state,
                        stream.action,
                        _completed_line(state, stream),
                        degraded=f"{reason}; kept the part of the line already spoken",
                    )
                wait = _backoff(exc, attempt)
                if attempt == self.max_attempts or loop.time() + wait >= deadline:
                    break
                await asyncio.sleep(wait)
        reason = "; ".join(failures) if failures else "no time left in the turn's budget"
        log.warning("llm_turn_fallback", reason=reason)
        reply = replace(self.fallback.decide(state, answer), degraded=reason)
        if on_text is not None:
            on_text(reply.text)
            on_text(LINE_COMPLETE)
        return reply

    async def _attempt(
        self,
        messages: list[ChatCompletionMessageParam],
        allowed: list[TurnAction],
        stream: TurnStream,
        deadline: float,
    ) -> tuple[TurnAction, str]:
        # A server that has not started answering by half the budget is given up on while a
        # retry still fits; one that is streaming may use the whole budget.
        first_chunk_by = asyncio.get_running_loop().time() + self.budget_seconds / 2
        async with asyncio.timeout_at(min(deadline, first_chunk_by)) as limit:
            response = await self.client.chat.completions.create(
                model=self.model,
                messages=messages,
                tools=[next_turn_tool(allowed)],
                tool_choice=tool_choice(),
                stream=True,
                # omit: no temperature is sent at all, and the server uses its own default.
                temperature=openai.omit if self.temperature is None else self.temperature,
            )
            async with response:
                async for chunk in response:
                    limit.reschedule(deadline)
                    for choice in chunk.choices:
                        for call in choice.delta.tool_calls or ():
                            # One decision per turn: any further call is ignored.
                            if call.index == 0 and call.function and call.function.arguments:
                                stream.feed(call.function.arguments)
        if not stream.arguments:
            raise MalformedTurn("the model answered without calling next_turn")
        return stream.finish()

    @staticmethod
    def _reply(
        state: InterviewState, action: TurnAction, line: str, degraded: str | None = None
    ) -> InterviewerReply:
        if action is TurnAction.follow_up:
            index, follow_ups = state.question_index, state.follow_ups_used + 1
        elif action is TurnAction.next_question:
            index, follow_ups = state.question_index + 1, 0
        else:
            index, follow_ups = state.question_index, state.follow_ups_used
        return InterviewerReply(
            text=line,
            action=SESSION_ACTION[action],
            question_index=index,
            follow_ups_used=follow_ups,
            degraded=degraded,
        )


def describe(exc: BaseException) -> str:
    if isinstance(exc, MalformedTurn):
        return f"malformed tool call: {exc}"
    return describe_failure(exc)


def _completed_line(state: InterviewState, stream: TurnStream) -> str:
    """The line of a turn whose stream broke after part of it was handed to speech.

    The session moves on by the decision, so the candidate must hear what the decision means:
    a line cut before its question ("Thanks, that's helpful. Now,") would move to question 2
    without asking it. The part already spoken is kept up to its last whole sentence, and the
    plan's own line for the decision follows it.
    """
    if stream.said_all:
        return spoken(stream.emitted).strip()
    kept = _whole_sentences(spoken(stream.emitted))
    plan = state.plan
    if stream.action is TurnAction.follow_up:
        ending = plan.questions[state.question_index].follow_ups[state.follow_ups_used]
    elif stream.action is TurnAction.next_question:
        ending = plan.questions[state.question_index + 1].text
    else:
        ending = plan.closing
    return f"{kept} {ending}".strip()


def _whole_sentences(text: str) -> str:
    """The text up to its last complete sentence (nothing if none is complete)."""
    text = text.strip()
    if text.endswith((".", "!", "?")):
        return text
    ends = [m.start() for m in SENTENCE_END.finditer(text)]
    return text[: ends[-1]].strip() if ends else ""


def _backoff(exc: BaseException, attempt: int) -> float:
    asked = retry_after(exc)
    return asked if asked is not None else FIRST_BACKOFF_SECONDS * 2.0 ** (attempt - 1)
