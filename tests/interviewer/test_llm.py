"""The language-model interviewer against a local OpenAI-compatible server (real HTTP, SSE)."""

import time

import pytest
import structlog

from harness.fake_openai import Fail, FakeOpenAI, Hang, Raw, Text, ToolCall
from harness.interview_model import FOLLOW_UP
from interview.config import PACKAGE_DIR, Settings
from interview.interviewer import (
    LINE_COMPLETE,
    InterviewerAction,
    InterviewState,
    PastTurn,
    build_interviewer,
)
from interview.interviewer.llm import LLMInterviewer
from interview.interviewer.prompts import TOOL_NAME
from interview.interviewer.scripted import ScriptedInterviewer
from interview.openai_client import async_client
from interview.plans import PlanCatalog

PLAN = PlanCatalog.load(PACKAGE_DIR / "plans").get("backend-engineer-screen")
FULL = "I built the billing service in Go, owned its data model, and ran it in production."


def interviewer(fake: FakeOpenAI, budget: float = 5.0, attempts: int = 3) -> LLMInterviewer:
    settings = Settings(openai_api_key=fake.api_key, openai_base_url=fake.base_url)
    return LLMInterviewer(
        async_client(settings, timeout=budget),
        model="test-model",
        fallback=ScriptedInterviewer(),
        budget_seconds=budget,
        max_attempts=attempts,
    )


def state(answer: str, question_index=0, follow_ups_used=0, elapsed=60.0) -> InterviewState:
    history = (
        PastTurn("interviewer", PLAN.questions[question_index].text),
        PastTurn("candidate", answer),
    )
    return InterviewState(PLAN, question_index, follow_ups_used, elapsed, history)


def test_the_engine_follows_the_settings():
    assert build_interviewer(Settings()).engine == "scripted"
    assert build_interviewer(Settings(openai_api_key="sk-x")).engine == "llm"
    assert build_interviewer(Settings(openai_api_key="sk-x", interviewer="scripted")).engine == (
        "scripted"
    )


async def test_a_thin_answer_gets_a_follow_up(fake_openai):
    reply = await interviewer(fake_openai).reply(state("It went fine."), "It went fine.")
    assert (reply.action, reply.question_index, reply.follow_ups_used) == (
        InterviewerAction.follow_up,
        0,
        1,
    )
    assert reply.text == FOLLOW_UP and reply.degraded is None
    request = fake_openai.chat_requests()[-1]
    assert request.body["stream"] is True and request.body["model"] == "test-model"
    # One tool, and a call to it required: that tool is forced.
    assert request.body["tool_choice"] == "required"
    assert [t["function"]["name"] for t in request.body["tools"]] == [TOOL_NAME]
    assert request.headers["authorization"] == f"Bearer {fake_openai.api_key}"


async def test_a_full_answer_moves_to_the_next_question(fake_openai):
    reply = await interviewer(fake_openai).reply(state(FULL), FULL)
    assert (reply.action, reply.question_index, reply.follow_ups_used) == (
        InterviewerAction.question,
        1,
        0,
    )
    assert PLAN.questions[1].text in reply.text


async def test_the_last_answer_closes(fake_openai):
    last = len(PLAN.questions) - 1
    reply = await interviewer(fake_openai).reply(state(FULL, question_index=last), FULL)
    assert reply.closes and reply.question_index == last


async def test_the_first_sentence_is_handed_on_before_the_completion_ends(fake_openai):
    fake_openai.chat.append(
        ToolCall(
            TOOL_NAME,
            {
                "action": "follow_up",
                "say": "Could you say more? What was the hardest part for you?",
            },
            chunks=6,
            delay=0.05,
            tail_delay=1.0,
        )
    )
    pieces: list[tuple[float, str]] = []
    reply = await interviewer(fake_openai).reply(
        state("Fine."), "Fine.", lambda piece: pieces.append((time.monotonic(), piece))
    )
    completed = fake_openai.completed_at[len(fake_openai.requests) - 1]
    assert "".join(p for _, p in pieces) == reply.text
    first_sentence_at = next(t for t, _ in pieces if "?" in "".join(p for u, p in pieces if u <= t))
    assert first_sentence_at < completed - 0.5
    # The whole line is known (its string closed) well before the call itself ends.
    complete_at = next(t for t, p in pieces if p == LINE_COMPLETE)
    assert complete_at < completed - 0.5


@pytest.mark.parametrize(
    "failure",
    [Fail(500), Fail(503), Fail(429, retry_after=0.2), Hang(3.0), Text("Sure! Next question.")],
    ids=["500", "503", "429", "timeout", "prose-instead-of-tool"],
)
async def test_one_failure_is_retried(fake_openai, failure):
    fake_openai.chat.append(failure)
    with structlog.testing.capture_logs() as logs:
        reply = await interviewer(fake_openai, budget=2.0).reply(state(FULL), FULL)
    assert reply.degraded is None and reply.question_index == 1
    assert len(fake_openai.chat_requests()) == 2
    assert [e["event"] for e in logs] == ["llm_turn_failed"]


async def test_a_malformed_tool_call_is_retried(fake_openai):
    fake_openai.chat.append(ToolCall(TOOL_NAME, '{"action": "next_question", "say": "Thanks'))
    reply = await interviewer(fake_openai).reply(state(FULL), FULL)
    assert reply.degraded is None and reply.action is InterviewerAction.question


async def test_a_decision_outside_the_plan_is_retried(fake_openai):
    # Closing with questions left is not allowed: refused before a word is spoken.
    fake_openai.chat.append(ToolCall(TOOL_NAME, {"action": "close", "say": "Goodbye."}))
    pieces: list[str] = []
    reply = await interviewer(fake_openai).reply(state(FULL), FULL, pieces.append)
    assert reply.action is InterviewerAction.question
    assert "".join(pieces) == reply.text


async def test_persistent_failure_falls_back_to_the_script_and_says_why(fake_openai):
    fake_openai.chat.append(Fail(500), Fail(429), Fail(502))
    pieces: list[str] = []
    with structlog.testing.capture_logs() as logs:
        reply = await interviewer(fake_openai).reply(state(FULL), FULL, pieces.append)
    expected = ScriptedInterviewer().decide(state(FULL), FULL)
    assert (reply.text, reply.action, reply.question_index) == (
        expected.text,
        expected.action,
        expected.question_index,
    )
    assert reply.degraded is not None
    assert "HTTP 500" in reply.degraded and "HTTP 429" in reply.degraded
    assert "".join(pieces) == reply.text
    assert fake_openai.api_key not in repr(logs)
    assert logs[-1]["event"] == "llm_turn_fallback"


async def test_the_turn_budget_bounds_the_wait(fake_openai):
    fake_openai.chat.append(Hang(5.0), Hang(5.0), Hang(5.0))
    started = time.monotonic()
    reply = await interviewer(fake_openai, budget=1.0).reply(state(FULL), FULL)
    assert time.monotonic() - started < 2.0
    assert reply.degraded is not None
    assert set(reply.degraded.split("; ")) == {"timed out"}


async def test_an_unreachable_server_falls_back(fake_openai):
    settings = Settings(openai_api_key="sk-x", openai_base_url="http://127.0.0.1:9/v1")
    broken = LLMInterviewer(
        async_client(settings, timeout=1), "m", ScriptedInterviewer(), 1.0, max_attempts=2
    )
    reply = await broken.reply(state(FULL), FULL)
    assert reply.degraded and "could not connect" in reply.degraded
    assert reply.question_index == 1


async def test_the_opening_is_the_plans_own_and_needs_no_model(fake_openai):
    reply = await interviewer(fake_openai).opening(state(FULL))
    assert reply.text.startswith(PLAN.greeting)
    assert fake_openai.requests == []


async def test_a_stream_that_breaks_after_speech_started_keeps_what_was_said(fake_openai):
    # The decision and a first sentence arrived (and are being spoken), then the call broke.
    fake_openai.chat.append(
        ToolCall(TOOL_NAME, '{"action": "follow_up", "say": "Tell me more. What was your')
    )
    pieces: list[str] = []
    reply = await interviewer(fake_openai).reply(state("Fine."), "Fine.", pieces.append)
    assert reply.action is InterviewerAction.follow_up
    # The unfinished sentence is dropped, and the plan's follow-up is asked after what was
    # already said: the turn counts as a follow-up, so the candidate must hear one.
    assert "".join(pieces) == "Tell me more. What was your"
    assert reply.text == f"Tell me more. {PLAN.questions[0].follow_ups[0]}"
    assert reply.degraded and "kept the part of the line already spoken" in reply.degraded
    assert len(fake_openai.chat_requests()) == 1  # no second line over the first


async def test_a_stream_cut_before_its_question_still_asks_the_next_question(fake_openai):
    # The session moves to question 2 on this decision: a line that ends before the question
    # would leave question 2 counted as asked but never heard.
    fake_openai.chat.append(
        ToolCall(TOOL_NAME, '{"action": "next_question", "say": "Thanks, that is helpful. Now,')
    )
    pieces: list[str] = []
    reply = await interviewer(fake_openai).reply(state(FULL), FULL, pieces.append)
    assert (reply.action, reply.question_index) == (InterviewerAction.question, 1)
    assert reply.text == f"Thanks, that is helpful. {PLAN.questions[1].text}"
    assert "".join(pieces) == "Thanks, that is helpful. Now,"


async def test_a_stream_cut_mid_sentence_keeps_no_half_sentence(fake_openai):
    # "version 2.5" has a full stop inside a word: not the end of a sentence.
    fake_openai.chat.append(
        ToolCall(TOOL_NAME, '{"action": "close", "say": "We moved to version 2.5 of the')
    )
    last = len(PLAN.questions) - 1
    reply = await interviewer(fake_openai).reply(
        state(FULL, question_index=last), FULL, lambda piece: None
    )
    assert reply.closes and reply.text == PLAN.closing


async def test_a_line_whose_words_all_arrived_is_kept_whole_when_the_call_breaks(fake_openai):
    say = "Thanks for your time today. We will be in touch soon."
    fake_openai.chat.append(ToolCall(TOOL_NAME, f'{{"action": "close", "say": "{say}"'))
    last = len(PLAN.questions) - 1
    pieces: list[str] = []
    reply = await interviewer(fake_openai).reply(
        state(FULL, question_index=last), FULL, pieces.append
    )
    assert reply.closes and reply.text == say
    assert pieces[-1] == LINE_COMPLETE


@pytest.mark.parametrize(
    "body",
    [
        b"data: {not json\n\n",
        b'data: {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",'
        b' "choices": null}\n\n',
        b'data: {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",'
        b' "choices": [{"index": 0}]}\n\n',
    ],
    ids=["event-not-json", "choices-null", "choice-without-delta"],
)
async def test_an_unreadable_stream_from_a_compatible_server_is_retried(fake_openai, body):
    # Servers that are only "OpenAI-compatible" send events the SDK cannot read; the turn
    # must still end with a line, never an exception out of reply().
    fake_openai.chat.append(Raw(body, "text/event-stream"))
    with structlog.testing.capture_logs() as logs:
        reply = await interviewer(fake_openai).reply(state(FULL), FULL)
    assert reply.degraded is None and reply.question_index == 1
    assert len(fake_openai.chat_requests()) == 2
    assert [e["event"] for e in logs] == ["llm_turn_failed"]


async def test_the_temperature_is_sent_only_when_one_is_set(fake_openai):
    settings = Settings(openai_api_key=fake_openai.api_key, openai_base_url=fake_openai.base_url)
    for temperature in (None, 0.3):
        chosen = LLMInterviewer(
            async_client(settings, timeout=5.0),
            model="test-model",
            fallback=ScriptedInterviewer(),
            budget_seconds=5.0,
            max_attempts=1,
            temperature=temperature,
        )
        await chosen.reply(state(FULL), FULL)
    unset, set_ = (r.body for r in fake_openai.chat_requests())
    assert "temperature" not in unset and set_["temperature"] == 0.3
