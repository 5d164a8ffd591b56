"""Property tests of the request models (Hypothesis): any JSON either validates or is refused with
a ValidationError (the API's 422), and whatever validates is stored and read back unchanged on
each backend, or refused by the domain with its own 4xx error; never a driver's error."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from interview.api.schemas import (
    AnswerRequest,
    IceCandidateRequest,
    RtcOfferRequest,
    StartRequest,
)
from interview.config import Settings
from interview.domain import Role
from interview.plans import UnknownPlan
from interview.runtime import Runtime
from interview.sessions import InvalidAnswer, SessionClosed
from interview.speech.errors import UnknownVoice

# Bounded so the SQLite runs fit `make check` (a few seconds); no deadline: a database write's
# time varies on a busy machine.
EXAMPLES = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# What a client can put in a JSON string: any character, and, one at a time or alone, lone
# surrogates (JSON's \ud800 escapes), NUL and the characters that show nothing.
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\u3000\u2028\u2029\t\r\n \x7f"
ODD = st.characters(codec=None, categories=["Cs"]) | st.sampled_from(INVISIBLE + "\x00")
PLAIN = st.text(st.characters(), max_size=40)
TEXT = st.one_of(
    PLAIN,
    PLAIN,
    st.tuples(PLAIN, ODD, PLAIN).map("".join),
    st.text(ODD, min_size=1, max_size=6),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
# A field is mostly a string (the interesting case), else any JSON value.
FIELD = st.one_of(TEXT, TEXT, TEXT, TEXT, JSON)


def body_of(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[Any]:
    # Now and then the whole body is some other JSON value.
    fields = st.fixed_dictionaries(required, optional=optional)
    return st.one_of(fields, fields, fields, JSON)


START = body_of(
    {"user_id": FIELD},
    {
        # Mostly valid (or null), so that what the other fields hold reaches the database.
        "plan_id": st.sampled_from(["backend-engineer-screen", None]) | FIELD,
        "candidate_name": FIELD,
        "voice": st.sampled_from(["bf_emma", "af_heart", None]) | FIELD,
        "metadata": st.dictionaries(TEXT, JSON, max_size=3) | JSON,
    },
)
ANSWER = body_of({"text": FIELD | st.text(st.characters(), min_size=3990, max_size=4010)}, {})
OFFER = body_of({"sdp": FIELD, "type": FIELD | st.just("offer")}, {})
CANDIDATE = body_of({"candidate": FIELD}, {"sdpMid": FIELD, "sdpMLineIndex": JSON})


def over_the_wire(body: Any) -> Any:
    """The body as the API gets it: sent as JSON (surrogates as \\u escapes), parsed back."""
    return json.loads(json.dumps(body))


def validated(model: type[BaseModel], body: Any) -> Any:
    """The model, or None when it refuses the body: with a ValidationError and nothing else."""
    try:
        return model.model_validate(over_the_wire(body))
    except ValidationError:
        return None


def storable(text: str) -> bool:
    return "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


@pytest.mark.parametrize(
    ("model", "bodies"),
    [(RtcOfferRequest, OFFER), (IceCandidateRequest, CANDIDATE)],
    ids=["offer", "ice-candidate"],
)
def test_the_voice_bodies_validate_or_are_refused(model: type[BaseModel], bodies):
    @EXAMPLES
    @given(bodies)
    def check(body: dict[str, Any]) -> None:
        parsed = validated(model, body)
        if parsed is not None:  # what passes is text the relay and aiortc can encode
            assert all(storable(v) for v in parsed.model_dump().values() if isinstance(v, str))

    check()


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    parts = Runtime.build(Settings(database_url=database_url, voice_enabled=False))
    await parts.store.migrate()
    await parts.events.start()
    yield parts
    await parts.events.stop()
    await parts.store.dispose()


@EXAMPLES
@given(body=START)
@example(
    body={"user_id": "u", "candidate_name": "Zo\u00eb \U0001f600", "metadata": {"k": ["\u200b"]}}
)
@example(body={"user_id": "u", "candidate_name": "a \ud800 b"})
async def test_what_start_accepts_is_stored_as_sent(runtime: Runtime, body: dict[str, Any]):
    request = validated(StartRequest, body)
    if request is None:
        return
    try:
        started = await runtime.service.start(
            user_id=request.user_id,
            plan_id=request.plan_id,
            candidate_name=request.candidate_name,
            metadata=request.metadata,
            voice=request.voice,
        )
    except (UnknownPlan, UnknownVoice):
        return  # the API's 422 unknown_plan / unknown_voice
    stored = await runtime.store.get_session(started.session.id)
    assert stored is not None
    assert (stored.user_id, stored.candidate_name) == (request.user_id, request.candidate_name)
    assert stored.meta == request.metadata


@EXAMPLES
@given(body=ANSWER)
@example(body={"text": " Caf\u00e9 \u200b\U0001f600 "})
@example(body={"text": "\u200b\ufeff"})
@example(body={"text": "abc \udc00\ud800 def"})
async def test_what_an_answer_accepts_is_stored_as_sent(runtime: Runtime, body: dict[str, Any]):
    request = validated(AnswerRequest, body)
    if request is None:
        return
    row = (await runtime.service.start("fuzz")).session
    try:
        await runtime.service.answer(row, request.text)
    except InvalidAnswer:
        return  # the API's 422 invalid_answer: nothing visible, or over MAX_ANSWER_CHARS
    except SessionClosed:
        pytest.fail("a new session took no answer")
    answers = [t for t in await runtime.store.list_turns(row.id) if t.role == Role.candidate]
    assert [a.text for a in answers] == [request.text.strip()]
