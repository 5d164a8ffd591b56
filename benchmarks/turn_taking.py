"""Turn-taking end to end: barge-in stop time, self-interruptions from echo, and backchannels,
measured at real aiortc clients against the real server.

    make bench      # or: .venv/bin/python -m benchmarks.turn_taking [--trials 20]

Starts `python app.py` (SQLite in a temp dir, voice on, the scripted interviewer, the default
end-of-turn policy) and runs three parts, one after the other:

1. Barge-in: the candidate says a phrase over the interviewer (over the greeting, then over each
   line that answers it, at different offsets); the stop time is from the phrase's first speech
   sample sent (`Utterance.speech_started_at`) to the arrival of the interviewer's last loud
   frame before its audio stops (the server sends nothing while silent).
2. Self-interruptions: whole interviews, every answer a finished sentence, with the interviewer's
   own received audio fed back into the microphone at -20 dB and -10 dB. Every pause or cut of an
   interviewer line counts: the candidate never speaks over it.
3. Backchannels ("mm-hm", "yeah", ...; espeak-ng and Kokoro voices) said over the interviewer:
   how many cut the line (words lost), and how long it paused.

Everything is written to benchmarks/results/turn_taking.json and the table in
benchmarks/README.md. Numbers are reported, never asserted (the machine may be shared).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.tables import fmt, row
from benchmarks.voice_bench import (
    Audio,
    answer_audio,
    code_version,
    log_events,
    machine,
    median,
    pct,
    publish,
    settle,
)
from harness.app_server import AppServer
from harness.kokoro_speech import kokoro_speech
from harness.speech_audio import SAMPLE_RATE, speech
from harness.sse import read_events
from harness.voice_client import VoiceClient, VoiceClientError, start_session

HERE = Path(__file__).resolve().parent
RESULTS_PATH = HERE / "results" / "turn_taking.json"
BEGIN_MARK, END_MARK = "<!-- turn-taking:begin -->", "<!-- turn-taking:end -->"

PLANS = ("customer-support-screen", "backend-engineer-screen")  # long lines: room to speak over
TARGETS = {
    "barge_in_stop_ms": 300.0,  # judged on the p95 of the trials
    "self_interruptions_minus_20_db": 0,
    "backchannel_words_lost_pct": 10.0,
}
# A run of received audio with no loud frame for this long is the interviewer having stopped
# (its lines' own pauses between sentences are shorter).
STOP_GAP = 0.5
# Barge-in phrases: real speech, each at least the 0.4 s that abandons a line.
PHRASES = (
    "Sorry, could you repeat the question please?",
    "Wait, can I ask something first?",
    "Sorry, I didn't catch that.",
    "Hold on, what do you mean by that?",
    "Excuse me, could you say that again?",
    "Actually, let me stop you there.",
    "Pardon, can you repeat that?",
    "Just a second, I have a question.",
    "Sorry to interrupt, but I missed that.",
    "One moment, could you slow down?",
)
# Seconds after a line's first loud frame at which a phrase starts. Over the greeting any time
# is a barge-in; over a reply, the first 1.5 s (REPAIR_WINDOW_SECONDS) would count as the
# candidate going on with the answer, so those offsets start later.
GREETING_OFFSETS = (0.6, 1.2, 2.0, 3.0, 4.5, 6.0)
REPLY_OFFSETS = (1.8, 2.2, 2.6, 3.0)
TRIALS_PER_SESSION = 5
ECHO_LEVELS_DB = (-20, -10)
MAX_ANSWERS = 10  # an interview of these plans closes after 4-5 answers
BACKCHANNELS = ("Mm-hm.", "Yeah.", "Okay.", "Right.", "Uh-huh.")
# (engine, voice, espeak words per minute)
BACKCHANNEL_VOICES = (
    ("espeak", "en-us", 160),
    ("espeak", "en-gb-x-rp", 150),
    ("kokoro", "am_michael", 0),
    ("kokoro", "bf_emma", 0),
)
BACKCHANNELS_PER_SESSION = 4
BACKCHANNEL_START = 1.5  # seconds into the greeting
BACKCHANNEL_SPACING = 2.5  # seconds from one backchannel's end to the next


# -- a session with its events ---------------------------------------------------------------


@dataclass
class Heard:
    """One SSE event, with its arrival time (time.monotonic())."""

    at: float
    event: str
    data: Any


@dataclass
class Conversation:
    api: str
    id: str
    token: str
    client: VoiceClient
    events: list[Heard] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    follower: asyncio.Task[None] | None = None
    stream_over: bool = False

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def follow(self) -> None:
        timeout = httpx.Timeout(15.0, read=None)
        async with (
            httpx.AsyncClient(timeout=timeout, trust_env=False) as http,
            http.stream("GET", f"{self.api}/{self.id}/events", headers=self.headers) as response,
        ):
            async for event in read_events(response):
                async with self.changed:
                    self.events.append(Heard(time.monotonic(), event.event, event.data))
                    self.changed.notify_all()
        # The server ends the stream with the results, which may come before the closing line
        # has played (and its "queued" event): whoever waits for one must not wait for ever.
        self.stream_over = True
        async with self.changed:
            self.changed.notify_all()

    def speaking(self, *states: str, after: float = 0.0) -> list[Heard]:
        return [
            e
            for e in self.events
            if e.event == "speaking" and e.at >= after and e.data.get("state") in states
        ]

    async def line_done(self, after: float, within: float = 60.0) -> float:
        """Until a line that started after `after` has been handed out whole or was cut;
        returns when that event arrived."""

        def found() -> list[Heard]:
            return self.speaking("queued", "interrupted", after=after)

        async with asyncio.timeout(within), self.changed:
            await self.changed.wait_for(
                lambda: bool(found()) or self.client.closed.is_set() or self.stream_over
            )
        done = found()
        return done[0].at if done else time.monotonic()

    @property
    def ended(self) -> bool:
        """The interview is over (the closing line was said, or it ended otherwise)."""
        return self.client.closed.is_set() or any(
            e.event == "status" and e.data.get("status") not in ("created", "active")
            for e in self.events
        )

    async def transcript(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=15.0, trust_env=False) as http:
            response = await http.get(f"{self.api}/{self.id}/transcript", headers=self.headers)
            response.raise_for_status()
            turns: list[dict[str, Any]] = response.json()["turns"]
            return turns

    async def close(self) -> None:
        async with httpx.AsyncClient(timeout=15.0, trust_env=False) as http:
            with contextlib.suppress(httpx.HTTPError):
                await http.post(f"{self.api}/{self.id}/end", headers=self.headers)
        await self.client.close()
        if self.follower is not None:
            self.follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.follower


async def open_conversation(api: str, label: str, plan: str) -> Conversation:
    """A new session, connected; a second try (a new session) when the first connection
    does not come up (seen once on a machine at load 10: the data channel never opened)."""
    for attempt in (1, 2):
        session_id, token = await start_session(api, user_id=label, plan_id=plan)
        try:
            client = await VoiceClient.connect(api, session_id, token, connect_timeout=30)
            break
        except VoiceClientError as exc:
            print(f"!! {label}: connection attempt {attempt} failed: {exc}", flush=True)
            if attempt == 2:
                raise
    conversation = Conversation(api, session_id, token, client)
    conversation.follower = asyncio.create_task(conversation.follow())
    return conversation


def loud_times(client: VoiceClient, since: float) -> list[float]:
    return [
        f.arrived_at
        for f in client.frames
        if f.arrived_at >= since and f.rms > client.speech_threshold
    ]


def stopped_at(client: VoiceClient, onset: float, since: float, gap: float = STOP_GAP) -> float:
    """Arrival of the interviewer's last loud frame before the first gap of `gap` seconds that
    lasts past `onset` (before `onset` when it was already quiet then)."""
    times = loud_times(client, since)
    for before, after in itertools.pairwise(times):
        if after - before >= gap and after > onset:
            return before
    return times[-1] if times else since


# -- 1. barge-in -----------------------------------------------------------------------------


async def barge_in_session(
    api: str, number: int, plan: str, phrases: list[Audio], texts: list[str]
) -> list[dict[str, Any]]:
    """Speak over the greeting, then over each line that answers the phrase."""
    try:
        conversation = await open_conversation(api, f"barge-in-{number}", plan)
    except VoiceClientError as exc:
        return [{"session": number, "error": repr(exc)}]
    client = conversation.client
    trials: list[dict[str, Any]] = []
    try:
        line_start = await client.wait_for_speech(40)
        line = "greeting"
        for k, (audio, text) in enumerate(zip(phrases, texts, strict=True)):
            offsets = GREETING_OFFSETS if line == "greeting" else REPLY_OFFSETS
            offset = offsets[(number * 3 + k) % len(offsets)]
            await asyncio.sleep(max(0.0, line_start + offset - time.monotonic()))
            said = await client.say(audio, trailing_silence=0.1)
            assert said.speech_started_at is not None and said.speech_ended_at is not None
            onset = said.speech_started_at
            await asyncio.sleep(STOP_GAP + 0.3)
            stop = stopped_at(client, onset, since=line_start - 0.05)
            paused = conversation.speaking("paused", "interrupted", after=onset - 0.05)
            trials.append(
                {
                    "session": number,
                    "session_id": conversation.id,
                    # The same moment on the wall clock, to match the server's log lines.
                    "onset_wall": round(time.time() - (time.monotonic() - onset), 3),
                    "line": line,
                    "offset_s": offset,
                    "phrase": text,
                    "stop_ms": round((stop - onset) * 1000),
                    # Silent already when the phrase began (the line had ended or was between
                    # sentences): no stop to time.
                    "quiet_at_onset": stop < onset,
                    "yield_event_ms": round((paused[0].at - onset) * 1000) if paused else None,
                }
            )
            print(f"   barge-in {number}.{k}: {trials[-1]}", flush=True)
            if client.closed.is_set():
                break
            with contextlib.suppress(TimeoutError):
                line_start = await client.wait_for_speech(30, after=said.speech_ended_at)
                line = "reply"
                continue
            break
        turns = await conversation.transcript()
        cut = [t for t in turns if t["role"] == "interviewer" and t["interruption"]]
        for trial in trials:
            trial["session_lines_cut"] = len(cut)
    except (TimeoutError, VoiceClientError) as exc:
        trials.append({"session": number, "error": repr(exc)})
    finally:
        await conversation.close()
    return trials


async def barge_in(api: str, count: int) -> list[dict[str, Any]]:
    audio = [speech(text) for text in PHRASES]
    trials: list[dict[str, Any]] = []
    sessions = -(-count // TRIALS_PER_SESSION)
    for number in range(sessions):
        take = min(TRIALS_PER_SESSION, count - number * TRIALS_PER_SESSION)
        picks = [(number * TRIALS_PER_SESSION + k) % len(PHRASES) for k in range(take)]
        plan = PLANS[number % len(PLANS)]
        print(f">> barge-in: session {number + 1} of {sessions} ({plan})", flush=True)
        trials += await barge_in_session(
            api, number, plan, [audio[i] for i in picks], [PHRASES[i] for i in picks]
        )
    return trials


# -- 2. self-interruptions -------------------------------------------------------------------


async def interview_with_echo(api: str, plan: str, echo_db: int, delay: float) -> dict[str, Any]:
    """A whole interview, answered after each line has ended, with echo at `echo_db`."""
    await asyncio.sleep(delay)
    try:
        conversation = await open_conversation(api, f"echo{echo_db}-{plan}", plan)
    except VoiceClientError as exc:
        return {"plan": plan, "echo_db": echo_db, "error": repr(exc)}
    client = conversation.client
    client.microphone.echo_gain = 10 ** (echo_db / 20)
    answers = answer_audio()
    said_times: list[tuple[float, float]] = []
    error = None
    started = time.monotonic()
    try:
        mark = started
        for k in range(MAX_ANSWERS + 1):
            await client.wait_for_speech(60, after=mark)
            done = await conversation.line_done(after=mark)
            await client.wait_for_silence(1.2, 60, after=done)
            # The closing line was the last (the session's status may change only later).
            closed = any(t["kind"] == "close" for t in await conversation.transcript())
            if closed or conversation.ended or k == MAX_ANSWERS:
                break
            await asyncio.sleep(0.3)
            said = await client.say(answers[k % len(answers)], trailing_silence=0.2)
            assert said.speech_started_at is not None and said.speech_ended_at is not None
            said_times.append((said.speech_started_at, said.speech_ended_at))
            mark = said.speech_ended_at
    except (TimeoutError, VoiceClientError) as exc:
        error = repr(exc)
    turns: list[dict[str, Any]] = []
    with contextlib.suppress(httpx.HTTPError):
        turns = await conversation.transcript()
    events = [e.data.get("state") for e in conversation.speaking("paused", "interrupted")]
    result = {
        "plan": plan,
        "echo_db": echo_db,
        "session_id": conversation.id,
        "seconds": round(time.monotonic() - started, 1),
        "answers": len(said_times),
        "interviewer_lines": len([t for t in turns if t["role"] == "interviewer"]),
        "lines_cut": [
            {"index": t["index"], "interruption": t["interruption"], "heard": t["text"]}
            for t in turns
            if t["role"] == "interviewer" and t["interruption"]
        ],
        "speaking_paused": events.count("paused"),
        "speaking_interrupted": events.count("interrupted"),
        "completed": any(t["kind"] == "close" for t in turns),
        "error": error,
    }
    await conversation.close()
    return result


async def self_interruptions(api: str) -> list[dict[str, Any]]:
    print(">> self-interruptions: whole interviews with echo", flush=True)
    return list(
        await asyncio.gather(
            *(
                # Started 2 s apart, so their lines do not all start and end together.
                interview_with_echo(api, plan, db, 2.0 * i)
                for i, (db, plan) in enumerate(itertools.product(ECHO_LEVELS_DB, PLANS))
            )
        )
    )


# -- 3. backchannels -------------------------------------------------------------------------


def backchannel_audio() -> list[tuple[str, str, Audio]]:
    """(voice, word, 48 kHz samples) of every backchannel in every voice."""
    out: list[tuple[str, str, Audio]] = []
    for engine, voice, wpm in BACKCHANNEL_VOICES:
        for word in BACKCHANNELS:
            if engine == "espeak":
                audio = speech(word, voice=voice, rate_wpm=wpm)
            else:
                audio = kokoro_speech(word, voice=voice)
            out.append((f"{engine}:{voice}", word, audio))
    return out


async def backchannel_session(
    api: str, number: int, plan: str, items: list[tuple[str, str, Audio]]
) -> tuple[list[dict[str, Any]], list[tuple[str, str, Audio]]]:
    """Backchannels over the greeting until one cuts it; returns the trials and those left."""
    try:
        conversation = await open_conversation(api, f"backchannel-{number}", plan)
    except VoiceClientError as exc:
        return [{"session": number, "error": repr(exc)}], items
    client = conversation.client
    trials: list[dict[str, Any]] = []
    left = list(items)
    try:
        start = await client.wait_for_speech(40)
        at = start + BACKCHANNEL_START
        while left:
            voice, word, audio = left[0]
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            said = await client.say(audio, trailing_silence=0.1)
            left.pop(0)
            assert said.speech_started_at is not None and said.speech_ended_at is not None
            onset = said.speech_started_at
            await asyncio.sleep(BACKCHANNEL_SPACING)
            states = [e.data.get("state") for e in conversation.speaking(
                "paused", "resumed", "interrupted", after=onset - 0.05
            )]  # fmt: skip
            quiet_at_onset = stopped_at(client, onset, since=start - 0.05) < onset
            times = loud_times(client, onset - 0.5)
            gaps = [
                (b - a, a)
                for a, b in itertools.pairwise(times)
                if b - a >= 0.1 and a <= said.speech_ended_at + 1.0
            ]
            trial = {
                "session": number,
                "session_id": conversation.id,
                "voice": voice,
                "word": word,
                "seconds": round(len(audio) / SAMPLE_RATE, 2),
                "paused": "paused" in states,
                "resumed": "resumed" in states,
                "cut": "interrupted" in states,
                # The longest gap in the interviewer's audio around the backchannel.
                "gap_ms": round(max(gaps)[0] * 1000) if gaps else 0,
                "quiet_at_onset": quiet_at_onset,
            }
            trials.append(trial)
            print(f"   backchannel {number}: {trial}", flush=True)
            # Another only while the line still plays (it would not be spoken over otherwise).
            if trial["cut"] or client.closed.is_set() or quiet_at_onset:
                break
            at = time.monotonic()
            if len(trials) >= BACKCHANNELS_PER_SESSION:
                break
    except (TimeoutError, VoiceClientError) as exc:
        trials.append({"session": number, "error": repr(exc)})
    finally:
        await conversation.close()
    return trials, left


async def backchannels(api: str) -> list[dict[str, Any]]:
    items = backchannel_audio()
    trials: list[dict[str, Any]] = []
    number = 0
    while items and number < 3 * len(items):
        plan = PLANS[number % len(PLANS)]
        print(f">> backchannels: session {number + 1}, {len(items)} left", flush=True)
        done, items = await backchannel_session(api, number, plan, items)
        trials += done
        number += 1
    return trials


# -- results ---------------------------------------------------------------------------------


def stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": median(values),
        "p95": pct(values, 95),
        "max": round(max(values), 1),
    }


def server_detection(trials: list[dict[str, Any]], log: str) -> None:
    """Add to each barge-in trial when the server heard the onset (its first barge_in_paused
    or answer_resumed line after it), in ms after the client sent the first speech sample."""
    heard = [
        (e["session_id"], datetime.fromisoformat(e["timestamp"]).timestamp())
        for name in ("barge_in_paused", "answer_resumed")
        for e in log_events(log, name)
        if "timestamp" in e
    ]
    for trial in trials:
        if "onset_wall" not in trial:
            continue
        after = [
            t for sid, t in heard if sid == trial["session_id"] and t >= trial["onset_wall"] - 0.05
        ]
        trial["server_heard_ms"] = (
            round((min(after) - trial["onset_wall"]) * 1000) if after else None
        )


def summarize(
    trials: list[dict[str, Any]],
    interviews: list[dict[str, Any]],
    backchannel_trials: list[dict[str, Any]],
    log: str,
) -> dict[str, Any]:
    server_detection(trials, log)
    timed = [t for t in trials if "stop_ms" in t and not t["quiet_at_onset"]]
    barge = {
        "trials": len([t for t in trials if "stop_ms" in t]),
        "quiet_at_onset": len([t for t in trials if t.get("quiet_at_onset")]),
        "errors": [t["error"] for t in trials if "error" in t],
        "stop_ms": stats([t["stop_ms"] for t in timed]),
        "stop_ms_greeting": stats([t["stop_ms"] for t in timed if t["line"] == "greeting"]),
        "stop_ms_reply": stats([t["stop_ms"] for t in timed if t["line"] == "reply"]),
        "yield_event_ms": stats(
            [t["yield_event_ms"] for t in timed if t["yield_event_ms"] is not None]
        ),
        "server_heard_ms": stats(
            [t["server_heard_ms"] for t in timed if t.get("server_heard_ms") is not None]
        ),
        "within_300_ms": len([t for t in timed if t["stop_ms"] <= 300]),
    }
    echo: dict[str, Any] = {}
    for db in ECHO_LEVELS_DB:
        runs = [i for i in interviews if i["echo_db"] == db and "session_id" in i]
        ids = {i["session_id"] for i in runs}
        server = {
            name: len([e for e in log_events(log, name) if e.get("session_id") in ids])
            for name in ("barge_in_paused", "barge_in_abandoned", "answer_resumed")
        }
        echo[str(db)] = {
            "interviews": len(runs),
            "completed": len([i for i in runs if i["completed"]]),
            "interviewer_lines": sum(i["interviewer_lines"] for i in runs),
            "lines_cut": sum(len(i["lines_cut"]) for i in runs),
            "lines_paused": sum(i["speaking_paused"] for i in runs),
            "self_interruptions": sum(len(i["lines_cut"]) + i["speaking_paused"] for i in runs),
            "server_log": server,
            "errors": [i["error"] for i in interviews if i["echo_db"] == db and i["error"]],
        }
    said = [t for t in backchannel_trials if "word" in t and not t["quiet_at_onset"]]
    paused = [t for t in said if t["paused"]]
    heard = [
        {"session_id": e.get("session_id"), "event": e["event"], "heard": e.get("heard")}
        for name in ("barge_in_resumed", "barge_in_abandoned")
        for e in log_events(log, name)
    ]
    back = {
        "trials": len(said),
        "quiet_at_onset": len([t for t in backchannel_trials if t.get("quiet_at_onset")]),
        "errors": [t["error"] for t in backchannel_trials if "error" in t],
        "paused": len(paused),
        "cut": len([t for t in said if t["cut"]]),
        "cut_pct": round(100 * len([t for t in said if t["cut"]]) / len(said), 1) if said else None,
        "pause_ms": stats([t["gap_ms"] for t in paused if not t["cut"]]),
        "by_voice": {
            voice: {
                "trials": len([t for t in said if t["voice"] == voice]),
                "cut": len([t for t in said if t["voice"] == voice and t["cut"]]),
            }
            for voice in dict.fromkeys(t["voice"] for t in said)
        },
        "by_word": {
            word: {
                "trials": len([t for t in said if t["word"] == word]),
                "cut": len([t for t in said if t["word"] == word and t["cut"]]),
            }
            for word in BACKCHANNELS
        },
        "server_heard": [h for h in heard if h["session_id"] in {t["session_id"] for t in said}],
    }
    return {"barge_in": barge, "echo": echo, "backchannels": back}


def targets(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []

    def add(
        name: str, value: float | None, limit: float, unit: str, note: str, judged: bool = True
    ) -> None:
        holds = None if value is None or not judged else value <= limit
        rows.append(
            {
                "target": name,
                "value": value,
                "limit": limit,
                "unit": unit,
                "holds": holds,
                "note": note,
            }
        )

    stop = summary["barge_in"]["stop_ms"]
    add(
        "Barge-in stop at the client, p95",
        stop.get("p95"),
        TARGETS["barge_in_stop_ms"],
        "ms",
        f"p50 {fmt(stop.get('p50'))} ms, max {fmt(stop.get('max'))} ms, n={stop['n']}",
    )
    echo = summary["echo"]
    for db in ECHO_LEVELS_DB:
        e = echo[str(db)]
        add(
            f"Self-interruptions, echo at {db} dB",
            e["self_interruptions"] if e["interviews"] else None,
            TARGETS["self_interruptions_minus_20_db"],
            "lines",
            f"{e['interviews']} interviews, {e['interviewer_lines']} lines"
            + ("" if db == -20 else " (no target at -10 dB; shown)"),
            judged=db == -20,
        )
    back = summary["backchannels"]
    add(
        "Backchannels that cut the line (words lost)",
        back["cut_pct"],
        TARGETS["backchannel_words_lost_pct"],
        "%",
        f"{back['cut']} of {back['trials']}",
    )
    return rows


def markdown(result: dict[str, Any]) -> str:
    m, code, s = result["machine"], result["code"], result["summary"]
    dirty = code.get("uncommitted")
    lines = [
        f"Last run {m['date']} on commit {code.get('commit', '?')[:10]}"
        + (f" with uncommitted changes to {', '.join(code['uncommitted'])}" if dirty else "")
        + f": {m['nproc']} x {m['cpu_model']}, load average at start "
        f"{' '.join(m['loadavg_at_start'])}; the benchmark took {result['runtime_seconds']:.0f} s.",
        "",
        "| Target | Measured | Limit | Holds | Note |",
        "|---|---|---|---|---|",
    ]
    for t in result["targets"]:
        holds = {True: "yes", False: "**no**", None: "-"}[t["holds"]]
        lines.append(
            row(
                t["target"],
                f"{fmt(t['value'])} {t['unit']}",
                f"{fmt(t['limit'])} {t['unit']}",
                holds,
                t["note"],
            )
        )
    b = s["barge_in"]
    lines += [
        "",
        "Barge-in: candidate's first speech sample sent -> interviewer's last loud frame received "
        "(ms); the `speaking` event with state `paused` (or `interrupted`) as it reached the "
        "client's `/events` stream, for comparison.",
        "",
        "| Over | Trials | p50 | p95 | max |",
        "|---|---|---|---|---|",
    ]
    for label, key in (
        ("greeting", "stop_ms_greeting"),
        ("a reply", "stop_ms_reply"),
        ("all", "stop_ms"),
        ("(server log: onset heard, all)", "server_heard_ms"),
        ("(`paused` event at the client, all)", "yield_event_ms"),
    ):
        st = b[key]
        lines.append(row(label, st["n"], st.get("p50"), st.get("p95"), st.get("max")))
    lines += [
        "",
        f"{b['within_300_ms']} of {b['stop_ms']['n']} stops within 300 ms; "
        f"{b['quiet_at_onset']} trial(s) began while the interviewer was already quiet (not "
        f"timed); errors: {len(b['errors'])}.",
        "",
        "Self-interruptions: whole interviews with the interviewer's received audio fed back into "
        "the microphone; every pause (`speaking` `paused`) or cut (a transcript turn with "
        "`interruption`) counts, since the candidate only speaks once each line has ended.",
        "",
        "| Echo | Interviews (completed) | Interviewer lines | Paused | Cut | Server: "
        "barge_in_paused / abandoned / answer_resumed |",
        "|---|---|---|---|---|---|",
    ]
    for db in ECHO_LEVELS_DB:
        e = s["echo"][str(db)]
        log = e["server_log"]
        lines.append(
            row(
                f"{db} dB",
                f"{e['interviews']} ({e['completed']})",
                e["interviewer_lines"],
                e["lines_paused"],
                e["lines_cut"],
                f"{log['barge_in_paused']} / {log['barge_in_abandoned']} / {log['answer_resumed']}",
            )
        )
    bc = s["backchannels"]
    lines += [
        "",
        f"Backchannels over the interviewer ({', '.join(BACKCHANNELS)}; each in "
        f"{len(BACKCHANNEL_VOICES)} voices): {bc['trials']} said, {bc['paused']} paused the "
        f"line, {bc['cut']} cut it ({fmt(bc['cut_pct'])} %). Pause (the gap in the received "
        f"audio) when it resumed: p50 {fmt(bc['pause_ms'].get('p50'))} ms, p95 "
        f"{fmt(bc['pause_ms'].get('p95'))} ms, max {fmt(bc['pause_ms'].get('max'))} ms "
        f"(n={bc['pause_ms']['n']}).",
        "",
        "| Voice | Said | Cut |",
        "|---|---|---|",
    ]
    for voice, v in bc["by_voice"].items():
        lines.append(row(voice, v["trials"], v["cut"]))
    lines += ["", "| Word | Said | Cut |", "|---|---|---|"]
    for word, v in bc["by_word"].items():
        lines.append(row(word, v["trials"], v["cut"]))
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------


async def bench(trials: int, workdir: Path, parts: set[str]) -> dict[str, Any]:
    started = time.monotonic()
    host, code = machine(), code_version()
    server = AppServer(
        workdir / "server.log",
        {
            "DATABASE_URL": f"sqlite:///{workdir}/bench.db",
            "SPEECH_CACHE_DIR": str(workdir / "speech-cache"),
            "VOICE_ENABLED": "true",
            "EVENTS_STREAM_SECONDS": "3600",
            "MAX_CONCURRENT_INTERVIEWS": "8",
            "LOG_LEVEL": "INFO",
        },
    )
    print(">> starting the server (the speech models load first)", flush=True)
    server.start(timeout=180)
    try:
        await asyncio.sleep(2)
        await warm_up(server.api)
        # The greetings' sessions prefetched their plans' next lines: let that synthesis end.
        assert server.process is not None
        await settle(server.process.pid)
        barge = await barge_in(server.api, trials) if "barge-in" in parts else []
        echo = await self_interruptions(server.api) if "echo" in parts else []
        back = await backchannels(server.api) if "backchannels" in parts else []
        await asyncio.sleep(1)
    finally:
        server.stop()
    summary = summarize(barge, echo, back, server.log())
    result: dict[str, Any] = {
        "machine": host,
        "code": code,
        "config": {
            "plans": PLANS,
            "phrases": PHRASES,
            "greeting_offsets_s": GREETING_OFFSETS,
            "reply_offsets_s": REPLY_OFFSETS,
            "stop_gap_s": STOP_GAP,
            "echo_levels_db": ECHO_LEVELS_DB,
            "backchannels": BACKCHANNELS,
            "backchannel_voices": BACKCHANNEL_VOICES,
        },
        "summary": summary,
        "barge_in_trials": barge,
        "interviews": echo,
        "backchannel_trials": back,
    }
    result["targets"] = targets(summary)
    result["runtime_seconds"] = round(time.monotonic() - started, 1)
    return result


async def warm_up(api: str) -> None:
    """Hear each plan's greeting once, so its speech is cached as on a server in use."""
    print(">> warm-up: each plan's greeting", flush=True)

    async def hear(plan: str) -> None:
        conversation = await open_conversation(api, "warm-up", plan)
        try:
            await conversation.line_done(after=0.0)
        finally:
            await conversation.close()

    await asyncio.gather(*(hear(plan) for plan in PLANS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="barge-in trials")
    parser.add_argument(
        "--parts", default="barge-in,echo,backchannels", help="which parts to run (comma list)"
    )
    parser.add_argument("--no-write", action="store_true", help="print, do not write results")
    parser.add_argument("--workdir", type=Path, help="keep the database and server.log here")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory(prefix="spool-turns-") as temp:
        workdir = args.workdir or Path(temp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            result = asyncio.run(bench(args.trials, workdir, parts))
        except BaseException:
            log = workdir / "server.log"
            if log.exists():
                print("server log (tail):\n" + "\n".join(log.read_text().splitlines()[-40:]))
            raise
    table = markdown(result)
    print(table)
    output = json.dumps(result, indent=2, default=list) + "\n"
    if args.workdir:
        (workdir / "turn_taking.json").write_text(output)
    if not args.no_write:
        publish(RESULTS_PATH, output, table, BEGIN_MARK, END_MARK)


if __name__ == "__main__":
    main()
