"""The accurate transcript end to end: real servers on 127.0.0.1, aiortc peers speaking Kokoro
answers over WebRTC, the accurate pass in its child process at idle priority. The report waits
for the pass and quotes the second a phrase was said; a killed pass is tried again; a restart
finishes the passes left pending; four sessions' replies never wait for the passes (the
server's own timing log); passes that time out leave the live text, flagged."""

from __future__ import annotations

import asyncio
import functools
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from harness import interview_model
from harness.app_server import AppServer, log_events
from harness.fake_openai import Behaviour, FakeOpenAI, ToolCall
from harness.kokoro_speech import kokoro_speech
from harness.postgres import PostgresServer
from harness.speech_audio import SAMPLE_RATE, join, silence, speech_bounds
from harness.voice_client import VoiceClient, start_session
from interview.report.evaluation_prompt import TOOL_NAME
from tests.api.helpers import auth
from tests.e2e.conftest import recall, voice_env

Audio = npt.NDArray[np.int16]

# The answer with a known phrase at a known offset: phrase A (unfinished, so the answer goes
# on), a pause, phrase B. Where B starts, counted in samples from the start of the speech, is
# where the accurate pass's word timings must put its first word.
PHRASE_A = "We moved our billing system to a new database, because"
PHRASE_B = "nightly batch jobs kept failing under heavy load."
ANCHOR = "nightly"  # B's first word, which the stand-in evaluator quotes from
PAUSE_SECONDS = 1.0
VOICE = "am_michael"
# Whisper base puts a word's start 0.1-0.25 s early on these clips (measured offline), and the
# server's voice activity detection may start the answer a frame or two off.
AT_TOLERANCE_SECONDS = 0.4
# Four sessions, two answers each, in two Kokoro voices (finished sentences: each gets its
# reply without the patient wait).
ANSWERS = (
    "I split our monolith into three services and moved the slowest queries to a cache.",
    "I start from the error rate and the latency graphs, then read the logs of one request.",
    "I wrote the load tests for our checkout and found a lock that serialized every order.",
    "I add a metric and an alert first, so the same failure can never hide from us again.",
    "We rolled the new search index out to one region first and compared the results.",
    "I bisect the releases between the last good build and the first bad one.",
    "I mentored two new engineers and reviewed their first designs with them every week.",
    "I reproduce the failure on my machine with the same data before I change anything.",
)
ANSWER_VOICES = ("am_michael", "bf_emma")
STAGGER_SECONDS = 1.0  # between the sessions' answers: real candidates do not speak in step
GREETING_SILENCE = 2.0  # the greeting is over (a busy machine may pause between sentences)
REPLY_SILENCE = 1.5


@functools.cache
def timed_answer() -> tuple[Audio, float]:
    """The answer A + pause + B at 48 kHz, and B's offset from the start of its speech."""
    first, second = kokoro_speech(PHRASE_A, voice=VOICE), kokoro_speech(PHRASE_B, voice=VOICE)
    audio = join(first, silence(PAUSE_SECONDS), second)
    speech, phrase_b = speech_bounds(audio), speech_bounds(second)
    assert speech is not None and phrase_b is not None
    b_starts = first.size + silence(PAUSE_SECONDS).size + phrase_b[0]
    return audio, (b_starts - speech[0]) / SAMPLE_RATE


def evaluator(body: dict[str, Any]) -> Behaviour:
    """The OpenAI stand-in: an interviewer's turns as interview_model answers them, and an
    evaluation whose every piece of evidence quotes phrase B as the transcript it was given
    spells it (from ANCHOR on, five words)."""
    tools = body.get("tools") or []
    if not tools or tools[0]["function"]["name"] != TOOL_NAME:
        return interview_model.respond(body)
    evaluation = interview_model.evaluation(body)
    found = re.search(rf"\b{ANCHOR}\b(?:\W+\w+){{4}}", body["messages"][-1]["content"], re.I)
    if found is not None:
        for competency in evaluation["competencies"]:
            competency["evidence"] = [found.group(0)]
    return ToolCall(TOOL_NAME, evaluation, chunks=1)


def clock(seconds: float) -> str:
    """A time into the answer as the HTML report writes it (whole seconds, m:ss)."""
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def start_server(directory: Path, name: str, **extra: str) -> AppServer:
    server = AppServer(directory / f"{name}.log", voice_env(directory, **extra))
    server.start(timeout=120)  # health is 200 once the speech models are loaded and warm
    return server


# --- The API, as a client uses it.


async def call(server: AppServer, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.api, timeout=30) as http:
        return await http.request(method, path, headers=auth(token), **kw)


async def turns(server: AppServer, sid: str, token: str) -> list[dict[str, Any]]:
    response = await call(server, "GET", f"/{sid}/transcript", token)
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["turns"]
    return found


async def answer_turn(server: AppServer, sid: str, token: str) -> dict[str, Any] | None:
    """The session's (first) candidate turn, None before there is one."""
    return next((t for t in await turns(server, sid, token) if t["role"] == "candidate"), None)


async def committed_answer(
    server: AppServer, sid: str, token: str, within: float = 60
) -> dict[str, Any]:
    """The candidate turn as soon as it is stored (polled every 50 ms)."""
    deadline = time.monotonic() + within
    while (turn := await answer_turn(server, sid, token)) is None:
        assert time.monotonic() < deadline, "the answer was never stored"
        await asyncio.sleep(0.05)
    return turn


async def end(server: AppServer, sid: str, token: str) -> None:
    response = await call(server, "POST", f"/{sid}/end", token)
    assert response.status_code == 200, response.text


@dataclass
class Ready:
    report: dict[str, Any]
    # What each /results that answered 202 saw of the answer: its `transcription` then.
    pending: list[str | None]


async def report_when_ready(server: AppServer, sid: str, token: str, within: float) -> Ready:
    """Poll /results until it is 200; each 202 on the way, with the answer's transcription."""
    pending: list[str | None] = []
    deadline = time.monotonic() + within
    while True:
        response = await call(server, "GET", f"/{sid}/results", token)
        if response.status_code == 200:
            return Ready(response.json(), pending)
        assert response.status_code == 202, response.text
        answer = await answer_turn(server, sid, token)
        pending.append(None if answer is None else answer["transcription"])
        assert time.monotonic() < deadline, f"no report within {within} s: {pending[-5:]}"
        await asyncio.sleep(0.1)


async def html_report(server: AppServer, sid: str, token: str) -> str:
    response = await call(server, "GET", f"/{sid}/results", token, params={"format": "html"})
    assert response.status_code == 200, response.text
    return response.text


@dataclass
class Spoken:
    """A session that heard its greeting and said an answer; its connection still open."""

    sid: str
    token: str
    client: VoiceClient
    said_at: float  # when the answer's last speech sample went out (time.monotonic())

    async def reply(self) -> None:
        """Wait until the interviewer's reply to the answer has been heard."""
        await self.client.wait_for_reply(timeout=90, after=self.said_at, silence=REPLY_SILENCE)


async def spoken_answer(server: AppServer, audio: Audio) -> Spoken:
    sid, token = await start_session(server.api, plan_id="quick-engineer")
    client = await VoiceClient.connect(server.api, sid, token)
    try:
        await client.wait_for_reply(timeout=90, silence=GREETING_SILENCE)
        said = await client.say(audio, trailing_silence=0.5)
    except BaseException:
        await client.close()
        raise
    assert said.speech_ended_at is not None
    return Spoken(sid, token, client, said.speech_ended_at)


# --- The accurate pass's child process, seen from /proc.


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def accurate_child(server: AppServer) -> int:
    """The server's child at idle priority: the accurate pass's process."""
    assert server.process is not None
    idle = [p for p in children(server.process.pid) if os.sched_getscheduler(p) == os.SCHED_IDLE]
    assert len(idle) == 1, f"children at SCHED_IDLE: {idle}"
    return idle[0]


def all_threads_idle(pid: int) -> bool:
    """Every thread of `pid` (the model's own included) under SCHED_IDLE."""
    tasks = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
    return all(os.sched_getscheduler(t) == os.SCHED_IDLE for t in tasks)


def cpu_ticks(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces
    return int(fields[11]) + int(fields[12])  # utime + stime


async def until_idle(pid: int, quiet: float = 1.0, within: float = 120) -> None:
    """Until the process used no CPU for `quiet` seconds (its engine loaded and warmed)."""
    deadline = time.monotonic() + within
    last, since = cpu_ticks(pid), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, "the accurate pass's process never went idle"
        await asyncio.sleep(0.1)
        now = cpu_ticks(pid)
        if now != last:
            last, since = now, time.monotonic()


async def kill_when_busy(pid: int, within: float = 60) -> None:
    """SIGKILL the process the moment it starts using CPU: a pass has begun."""
    deadline = time.monotonic() + within
    idle = cpu_ticks(pid)
    while cpu_ticks(pid) == idle:
        assert time.monotonic() < deadline, "no pass started"
        await asyncio.sleep(0.005)
    os.kill(pid, signal.SIGKILL)


def at(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


# --- Servers: one restarted on the database of one that ran no pass; one whose passes time out.


@dataclass
class LeftPending:
    """An interview server 1 ended with its answer's pass still to run."""

    sid: str
    token: str
    live_text: str
    log: str


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("accurate")


@pytest.fixture(scope="module")
def left_pending(directory: Path) -> LeftPending:
    """Server 1 (ACCURATE_PASS_WORKERS=0: it runs no pass) takes a spoken answer; the interview
    ends; /results stays 202; server 1 stops."""
    first = start_server(directory, "server-1", ACCURATE_PASS_WORKERS="0")

    async def interview() -> LeftPending:
        spoken = await spoken_answer(first, kokoro_speech(ANSWERS[0], voice=VOICE))
        sid, token = spoken.sid, spoken.token
        try:
            await spoken.reply()
        finally:
            await spoken.client.close()
        # Read after the reply: an answer taken for finished at a pause may have gone on.
        answer = await committed_answer(first, sid, token)
        await end(first, sid, token)
        for _ in range(10):  # a second: nothing here will ever run the pass
            assert (await call(first, "GET", f"/{sid}/results", token)).status_code == 202
            still = await answer_turn(first, sid, token)
            assert still is not None and still["transcription"] == "live"
            await asyncio.sleep(0.1)
        return LeftPending(sid, token, answer["text"], "")

    try:
        pending = asyncio.run(interview())
    finally:
        first.stop()
    pending.log = first.log()
    return pending


@pytest.fixture(scope="module")
def server(
    directory: Path, left_pending: LeftPending, fake_openai_server: FakeOpenAI
) -> Iterator[AppServer]:
    """Server 2, on server 1's database, with the accurate pass on (one worker), up to four
    sessions, and the OpenAI stand-in as the report's evaluator."""
    fake_openai_server.reset()
    fake_openai_server.chat.default = evaluator
    second = start_server(
        directory,
        "server-2",
        MAX_CONCURRENT_INTERVIEWS="4",
        INTERVIEWER="scripted",  # the model is asked for evaluations only
        REPORT_EVALUATION="true",
        **fake_openai_server.env(),
    )
    yield second
    second.stop()
    fake_openai_server.reset()


@pytest.fixture(scope="module")
def timing_out_server(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
) -> Iterator[AppServer]:
    """Every attempt of every pass times out (50 ms), on PostgreSQL."""
    directory = tmp_path_factory.mktemp("timing-out")
    server = start_server(
        directory,
        "server",
        DATABASE_URL=postgres_server.create_database(),
        ACCURATE_PASS_TIMEOUT_SECONDS="0.05",
    )
    yield server
    server.stop()


# --- The tests.


async def test_a_restart_finishes_the_passes_left_pending(
    server: AppServer, left_pending: LeftPending
):
    sid, token = left_pending.sid, left_pending.token
    assert log_events(left_pending.log, "accurate_pass") == []  # server 1 ran none
    ready = await report_when_ready(server, sid, token, within=120)
    answers = [a for q in ready.report["questions"] for a in q["answers"]]
    assert [a["transcription"] for a in answers] == ["accurate"]
    turn = await answer_turn(server, sid, token)
    assert turn is not None
    assert turn["transcription"] == "accurate" and turn["draft_text"] == left_pending.live_text
    assert answers[0]["text"] == turn["text"]
    assert recall(ANSWERS[0], turn["text"]) >= 0.9, turn["text"]
    done = [e for e in server.events("accurate_pass") if e["session_id"] == sid]
    assert [e["outcome"] for e in done] == ["done"]


async def test_the_report_waits_for_the_accurate_text_and_quotes_when_it_was_said(
    server: AppServer, fake_openai_server: FakeOpenAI
):
    audio, offset = timed_answer()
    spoken = await spoken_answer(server, audio)
    sid, token = spoken.sid, spoken.token
    try:
        # Ended the moment the answer is stored: its pass has only just begun.
        live = await committed_answer(server, sid, token)
        await end(server, sid, token)
    finally:
        await spoken.client.close()
    assert live["transcription"] == "live" and live["words"] is None
    ready = await report_when_ready(server, sid, token, within=120)
    assert "live" in ready.pending, ready.pending  # 202 while the pass was still to finish
    assert set(ready.pending) <= {"live", "accurate"}

    turn = await answer_turn(server, sid, token)
    assert turn is not None and turn["transcription"] == "accurate"
    assert turn["draft_text"] == live["text"] and turn["transcription_note"] is None
    assert recall(f"{PHRASE_A} {PHRASE_B}", turn["text"]) >= 0.9, turn["text"]
    words = turn["words"]
    assert words and "".join(w["word"] for w in words).strip() == turn["text"]
    said = [w for w in words if w["word"].strip().lower().startswith(ANCHOR)]
    assert len(said) == 1, words
    assert said[0]["start"] == pytest.approx(offset, abs=AT_TOLERANCE_SECONDS), (said, offset)

    report = ready.report
    answers = [a for q in report["questions"] for a in q["answers"]]
    assert [(a["turn_index"], a["transcription"]) for a in answers] == [(turn["index"], "accurate")]
    assert answers[0]["text"] == turn["text"]
    assert report["transcript"]["accurate"] == 1 and report["transcript"]["flagged_turns"] == []
    # The evaluator read the accurate text, and its quote of phrase B says when it was said.
    asked = [r for r in fake_openai_server.chat_requests() if TOOL_NAME in str(r.body)]
    assert any(turn["text"] in r.body["messages"][-1]["content"] for r in asked)
    evidence = [e for c in report["evaluation"]["competencies"] for e in c["evidence"]]
    assert evidence and all(ANCHOR in e["quote"].lower() for e in evidence), evidence
    for quote in evidence:
        assert quote["turn_index"] == turn["index"]
        assert quote["at_seconds"] == pytest.approx(offset, abs=AT_TOLERANCE_SECONDS)
    html = await html_report(server, sid, token)
    shown = f'"{evidence[0]["quote"]}" <span class="meta">(turn {turn["index"]}, at '
    assert f"{shown}{clock(evidence[0]['at_seconds'])} into the answer)" in html


async def test_a_pass_killed_midway_is_tried_again(server: AppServer):
    child = accurate_child(server)
    await until_idle(child)
    spoken = await spoken_answer(server, timed_answer()[0])
    sid, token = spoken.sid, spoken.token
    try:
        await kill_when_busy(child)
        await spoken.reply()
    finally:
        await spoken.client.close()
    await end(server, sid, token)
    ready = await report_when_ready(server, sid, token, within=120)
    answers = [a for q in ready.report["questions"] for a in q["answers"]]
    assert [a["transcription"] for a in answers] == ["accurate"]
    runs = [e for e in server.events("accurate_pass") if e["session_id"] == sid]
    # The killed attempt failed; the next one, in a new child, transcribed the answer.
    assert [(e["attempt"], e["pid"], e["outcome"]) for e in runs[:1]] == [(1, child, "failed")]
    assert runs[-1]["outcome"] == "done" and runs[-1]["pid"] != child, runs
    assert runs[-1]["pid"] == accurate_child(server) and all_threads_idle(runs[-1]["pid"])


async def test_with_four_sessions_no_reply_waits_for_the_passes(server: AppServer):
    assert server.process is not None
    answers = [kokoro_speech(t, voice=ANSWER_VOICES[i % 2]) for i, t in enumerate(ANSWERS)]

    async def converse(number: int) -> tuple[str, str]:
        sid, token = await start_session(server.api, plan_id="quick-engineer")
        client = await VoiceClient.connect(server.api, sid, token)
        try:
            await client.wait_for_reply(timeout=90, silence=GREETING_SILENCE)
            await asyncio.sleep(number * STAGGER_SECONDS)
            for audio in (answers[2 * number], answers[2 * number + 1]):
                said = await client.say(audio, trailing_silence=0.5)
                await client.wait_for_reply(
                    timeout=90, after=said.speech_ended_at, silence=REPLY_SILENCE
                )
        finally:
            await client.close()
        await end(server, sid, token)
        return sid, token

    sessions = await asyncio.gather(*(converse(n) for n in range(4)))
    for sid, token in sessions:
        report = (await report_when_ready(server, sid, token, within=180)).report
        assert {a["transcription"] for q in report["questions"] for a in q["answers"]} == {
            "accurate"
        }
    ids = {sid for sid, _ in sessions}
    passes = [e for e in server.events("accurate_pass") if e["session_id"] in ids]
    replies = [e for e in server.events("reply_timing") if e["session_id"] in ids]
    assert len(passes) >= 8 and {e["outcome"] for e in passes} == {"done"}
    assert len(replies) >= 8
    # Every pass ran in the server's child at idle priority, never in the server itself.
    child = accurate_child(server)
    assert {e["pid"] for e in passes} == {child} and child != server.process.pid
    assert all_threads_idle(child)

    # Each reply from the end of the candidate's speech (its `reply_timing` line is logged as
    # its first audio goes out, `total_ms` after that) to its first audio: a reply made from
    # start to end while a pass was running (its live STT included) did not wait for that pass.
    running = [(at(e["started"]), at(e["ended"])) for e in passes]
    made = [(at(r["timestamp"]) - r["total_ms"] / 1000, at(r["timestamp"])) for r in replies]
    overlapped = [(a, b) for a, b in made if any(s < b and a < e for s, e in running)]
    within = [(a, b) for a, b in made if any(s <= a and b <= e for s, e in running)]
    assert overlapped and within, (made, running)
    # And the pass stood still meanwhile: a pass that ran across a reply was held (stopped)
    # while the reply's live speech work ran.
    across = [
        e for e in passes if any(at(e["started"]) <= a and b <= at(e["ended"]) for a, b in made)
    ]
    assert across and all(e["held_seconds"] > 0 for e in across), across


async def test_passes_that_time_out_leave_the_live_text_flagged(timing_out_server: AppServer):
    server = timing_out_server
    spoken = await spoken_answer(server, kokoro_speech(ANSWERS[2], voice=VOICE))
    sid, token = spoken.sid, spoken.token
    try:
        await spoken.reply()
    finally:
        await spoken.client.close()
    live = await committed_answer(server, sid, token)
    await end(server, sid, token)
    report = (await report_when_ready(server, sid, token, within=180)).report
    answers = [a for q in report["questions"] for a in q["answers"]]
    assert [(a["text"], a["transcription"], a["transcription_note"]) for a in answers] == [
        (live["text"], "live_only", "timed_out")
    ]
    assert report["transcript"]["flagged_turns"] == [live["index"]]
    assert report["transcript"]["live_only"] == 1
    turn = await answer_turn(server, sid, token)
    assert turn is not None
    assert (turn["text"], turn["transcription"], turn["transcription_note"], turn["words"]) == (
        live["text"],
        "live_only",
        "timed_out",
        None,
    )
    assert "(live transcript only: less exact)" in await html_report(server, sid, token)
    runs = [e for e in server.events("accurate_pass") if e["session_id"] == sid]
    # Each stretch of the answer (two when it went on after a pause was taken for its end):
    # two attempts, both timed out.
    segments = sorted({e["segment"] for e in runs})
    assert segments and segments == list(range(len(segments)))
    for segment in segments:
        tried = [(e["attempt"], e["outcome"]) for e in runs if e["segment"] == segment]
        assert tried == [(1, "timed_out"), (2, "timed_out")], runs
