"""Turn-taking end to end, with real audio over real WebRTC: thinking pauses heard out, barge-in
(the interviewer stops, resumes after a backchannel, is not fooled by its own echo), a premature
end repaired, and one check-in after a long silence."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import numpy as np
import pytest

from harness.app_server import AppServer
from harness.speech_audio import answer_with_pause, speech
from harness.voice_client import VoiceClient, start_session
from tests.api.helpers import auth
from tests.e2e.conftest import recall, start_voice_server

Transcribe = Callable[[int, np.ndarray], str]

GREETING = "Hello, welcome to your practice interview. Tell me about a project you are proud of."
# How long after the candidate's first speech sample the interviewer's audio must have stopped
# at the client. The target is 0.3 s, measured over many trials by `make bench`
# (benchmarks/turn_taking.py); here, on a shared machine, the test tells "stopped" from "went on
# with its line" (several seconds more) with room for a busy moment.
BARGE_IN_STOP_SECONDS = 1.0
# The longest a backchannel may hold the line (its words are transcribed first); the rest of the
# line is several seconds long.
BACKCHANNEL_HOLD_SECONDS = 3.0
# A gap in the received audio at least this long is the interviewer having stopped.
GAP = 0.25


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[AppServer]:
    server = start_voice_server(tmp_path_factory.mktemp("turns"), MAX_CONCURRENT_INTERVIEWS="2")
    yield server
    server.stop()


async def transcript(server: AppServer, sid: str, token: str) -> list[dict]:
    async with httpx.AsyncClient(base_url=server.api, timeout=10) as client:
        response = await client.get(f"/{sid}/transcript", headers=auth(token))
        return response.json()["turns"]


def loud_spans(client: VoiceClient, since: float, gap: float = GAP) -> list[tuple[float, float]]:
    """(first, last) arrival times of runs of loud received frames after `since`, split where
    no loud frame arrived for `gap` seconds (the server sends nothing while it is silent)."""
    spans: list[tuple[float, float]] = []
    for frame in client.frames:
        if frame.arrived_at < since or frame.rms < client.speech_threshold:
            continue
        if spans and frame.arrived_at - spans[-1][1] < gap:
            spans[-1] = (spans[-1][0], frame.arrived_at)
        else:
            spans.append((frame.arrived_at, frame.arrived_at))
    return spans


@contextlib.asynccontextmanager
async def interview(server: AppServer) -> AsyncIterator[tuple[VoiceClient, str, str]]:
    """A voice interview on the quick plan: (client, session id, token)."""
    sid, token = await start_session(server.api, plan_id="quick-engineer")
    client = await VoiceClient.connect(server.api, sid, token)
    try:
        yield client, sid, token
    finally:
        await client.close()


async def greeting_started(client: VoiceClient) -> float:
    return await client.wait_for_speech(timeout=40)


async def test_a_two_second_thinking_pause_mid_sentence_stays_one_answer(server: AppServer):
    async with interview(server) as (client, sid, token):
        greeting = await client.wait_for_reply(timeout=40)
        first = "We should have tested the migration on"
        second = "a full copy of the production data before the release."
        said = await client.say(answer_with_pause(first, second, pause=2.0))
        reply = await client.wait_for_reply(after=said.speech_ended_at, timeout=40)
        # Nothing from the interviewer between the end of its greeting and the reply: it did
        # not speak into the pause.
        assert loud_spans(client, since=greeting.ended_at + 0.1)[0][0] == pytest.approx(
            reply.started_at, abs=0.05
        )
        assert said.speech_ended_at is not None and reply.started_at > said.speech_ended_at
        turns = await transcript(server, sid, token)
        assert [t["role"] for t in turns] == ["interviewer", "candidate", "interviewer"]
        assert recall(f"{first} {second}", turns[1]["text"]) >= 0.7, turns[1]["text"]


async def test_barge_in_stops_the_interviewer_and_the_next_line_answers(
    server: AppServer, transcribe: Transcribe
):
    async with interview(server) as (client, sid, token):
        started = await greeting_started(client)
        await asyncio.sleep(1.5)
        question = "Sorry, could you repeat the question please?"
        said = await client.say(speech(question), trailing_silence=0.2)
        assert said.speech_started_at is not None
        # The interviewer's audio stopped at the client within the bound.
        before = [s for s in loud_spans(client, since=started) if s[0] < said.speech_started_at]
        stopped = before[-1][1]
        assert stopped - said.speech_started_at <= BARGE_IN_STOP_SECONDS, (
            f"the interviewer went on {stopped - said.speech_started_at:.3f} s"
        )
        reply = await client.wait_for_reply(after=said.speech_ended_at, timeout=40)
        turns = await transcript(server, sid, token)
        assert [(t["role"], t["kind"]) for t in turns] == [
            ("interviewer", "question"),
            ("candidate", "answer"),
            ("interviewer", "repeat"),
        ]
        cut, answer, repeat = turns
        # The line is stored as played: the words up to the cut, marked interrupted.
        assert cut["interruption"] == "barge_in"
        assert cut["planned_text"] == GREETING
        assert 0 < len(cut["text"].split()) < len(GREETING.split())
        assert GREETING.startswith(cut["text"])
        assert recall(question, answer["text"]) >= 0.6, answer["text"]
        # The next line answers them: the question, again.
        assert repeat["text"].endswith("Tell me about a project you are proud of.")
        heard = transcribe(reply.sample_rate, reply.audio)
        assert recall("Tell me about a project you are proud of", heard) >= 0.6, heard


async def test_a_backchannel_pauses_the_line_briefly_and_it_resumes_whole(
    server: AppServer, transcribe: Transcribe
):
    async with interview(server) as (client, sid, token):
        started = await greeting_started(client)
        await asyncio.sleep(1.5)
        said = await client.say(speech("Mm-hmm."), trailing_silence=0.2)
        assert said.speech_started_at is not None
        await client.wait_for_silence(2.0, timeout=40, after=said.speech_ended_at)
        spans = loud_spans(client, since=started)
        # Paused at most briefly: the longest gap inside the line is short.
        gaps = [b[0] - a[1] for a, b in itertools.pairwise(spans)]
        assert max(gaps, default=0.0) < BACKCHANNEL_HOLD_SECONDS, gaps
        _rate, audio = client.received_audio(since=started - 0.05)
        heard = transcribe(client.sample_rate or 48_000, audio)
        assert recall(GREETING, heard) >= 0.8, heard
        turns = await transcript(server, sid, token)
        # Not an answer, and the line was not cut.
        assert [t["role"] for t in turns] == ["interviewer"]
        assert turns[0]["interruption"] is None


async def test_the_interviewers_own_echo_at_minus_20_db_neither_pauses_nor_stops_it(
    server: AppServer, transcribe: Transcribe
):
    async with interview(server) as (client, sid, token):
        client.microphone.echo_gain = 10 ** (-20 / 20)
        greeting = await client.wait_for_reply(timeout=40, silence=1.5)
        spans = loud_spans(client, since=greeting.started_at - 0.05)
        assert len([s for s in spans if s[1] <= greeting.ended_at + 0.05]) == 1, spans
        heard = transcribe(greeting.sample_rate, greeting.audio)
        assert recall(GREETING, heard) >= 0.8, heard
        # And the answer, spoken while the echo is on, is answered whole.
        said = await client.say(
            speech("I led the move of our billing jobs onto a queue, and it cut failures by half.")
        )
        reply = await client.wait_for_reply(after=said.speech_ended_at, timeout=40, silence=1.5)
        assert len(loud_spans(client, since=reply.started_at - 0.05)) == 1
        turns = await transcript(server, sid, token)
        assert [t["role"] for t in turns] == ["interviewer", "candidate", "interviewer"]
        assert all(t["interruption"] is None for t in turns)


async def test_a_premature_end_is_repaired_into_one_answer(server: AppServer):
    async with interview(server) as (client, sid, token):
        greeting = await client.wait_for_reply(timeout=40)
        first = "I built the billing service for our shop."
        second = "And then I also rewrote the alerting so that failures paged the right team."
        said = await client.say(speech(first), trailing_silence=0.0)
        # The interviewer takes the pause for the end of the answer and starts to reply...
        replying = await client.wait_for_speech(timeout=40, after=said.speech_ended_at)
        # ...and the candidate goes on, within a second of it.
        await asyncio.sleep(0.3)
        more = await client.say(speech(second))
        reply = await client.wait_for_reply(after=more.speech_ended_at, timeout=40)
        assert more.speech_ended_at is not None and reply.started_at > more.speech_ended_at
        turns = await transcript(server, sid, token)
        roles = [(t["role"], t["interruption"]) for t in turns]
        assert roles == [
            ("interviewer", None),
            ("candidate", None),
            ("interviewer", "withdrawn"),
            ("interviewer", None),
        ], roles
        # One answer, both stretches in it: never two answers to one question. (tiny.en
        # mishears some of espeak's words, so each stretch is checked for most of its words.)
        answer = turns[1]["text"]
        assert recall(first, answer) >= 0.7 and recall(second, answer) >= 0.5, answer
        assert replying - greeting.ended_at > 0


@pytest.fixture(scope="module")
def patient_server(tmp_path_factory) -> Iterator[AppServer]:
    server = start_voice_server(
        tmp_path_factory.mktemp("check-in"),
        MAX_CONCURRENT_INTERVIEWS="1",
        CHECK_IN_AFTER_SECONDS="3",
    )
    yield server
    server.stop()


async def test_a_long_silence_after_a_question_gets_one_check_in(
    patient_server: AppServer, transcribe: Transcribe
):
    async with interview(patient_server) as (client, sid, token):
        greeting = await client.wait_for_reply(timeout=40)
        check_in = await client.wait_for_reply(after=greeting.ended_at, timeout=20)
        waited = check_in.started_at - greeting.ended_at
        assert 2.5 < waited < 5.0, waited
        heard = transcribe(check_in.sample_rate, check_in.audio)
        assert recall("Take your time; tell me when you're ready.", heard) >= 0.6, heard
        # Once: another long silence brings nothing.
        await asyncio.sleep(7.0)
        assert loud_spans(client, since=check_in.ended_at + 0.1) == []
        turns = await transcript(patient_server, sid, token)
        assert [(t["role"], t["kind"]) for t in turns] == [
            ("interviewer", "question"),
            ("interviewer", "check_in"),
        ]
        # The candidate then answers, and the interview goes on as usual.
        said = await client.say(speech("I built a billing service and kept it reliable."))
        await client.wait_for_reply(after=said.speech_ended_at, timeout=40)
        turns = await transcript(patient_server, sid, token)
        assert [t["role"] for t in turns][2:] == ["candidate", "interviewer"]
