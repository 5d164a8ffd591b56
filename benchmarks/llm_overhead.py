"""The LLM interviewer's overhead next to the scripted one's, in one run on the same machine.

    make bench      # after the voice benchmark; or: .venv/bin/python -m benchmarks.llm_overhead

Starts a local OpenAI-compatible server that answers at once (harness/fake_openai.py with a
rule-based model, no delay between streamed pieces) and two real servers (`python app.py`): one
with INTERVIEWER=scripted, one with INTERVIEWER=llm pointed at that local server. Each gets one
voice session on the same short plan (written to the run's temp dir) and the same espeak-ng
answers; the turns alternate between the two servers, so load from other processes hits both
modes alike. The measure is the server's own "end of turn -> first reply audio" (`total_ms -
end_of_turn_ms` of its `reply_timing` log line): STT, the interviewer, text-to-speech of the
first piece. Writes benchmarks/results/llm_overhead.json and its table in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.voice_bench import (
    HERE,
    NPROC,
    Audio,
    Session,
    answer,
    code_version,
    cpu_seconds,
    finish,
    log_events,
    machine,
    machine_ticks,
    median,
    open_session,
    pct,
    publish,
)
from harness.app_server import AppServer
from harness.fake_openai import Behaviour, FakeOpenAI, ToolCall
from harness.interview_model import respond
from harness.speech_audio import speech
from harness.voice_client import VoiceClientError

RESULTS_PATH = HERE / "results" / "llm_overhead.json"
BEGIN_MARK, END_MARK = "<!-- llm-overhead:begin -->", "<!-- llm-overhead:end -->"
MODES = ("scripted", "llm")
DEFAULT_TURNS = 20  # measured per mode, after one warm-up turn each
MODEL = "local-instant"  # what the LLM server sends as OPENAI_MODEL; any name works here
# Silence that ends the interviewer's line once it has been queued in full (the voice benchmark
# waits 1.5 s; after "queued" no gap can come from synthesis, and every turn pays this wait).
REPLY_SILENCE = 1.0
# Before each answer both servers must be this quiet (% of one core over QUIET_WINDOW): the
# scripted server synthesizes its next line after each reply, and that must not land in the
# other server's measured turn. A connected silent session costs ~10 %.
QUIET_PCT, QUIET_WINDOW, QUIET_MAX_SECONDS = 30.0, 0.25, 15.0

# Short lines keep each turn ~7 s: the plan has no follow-ups, so every answer gets "next
# question" from both interviewers and every reply is a new line.
QUESTIONS = (
    "How do you start a support call?",
    "What do you do when a customer is angry?",
    "How do you handle a question you cannot answer?",
    "How do you explain a technical fix simply?",
    "When do you escalate a ticket?",
    "How do you keep track of your promises?",
    "What makes a good help article?",
    "How do you handle a refund request?",
    "How do you deal with a very long queue?",
    "What do you say when a delivery is late?",
    "How do you end a conversation well?",
    "How do you learn a new product quickly?",
    "What do you do after a difficult call?",
    "How do you work with the product team?",
    "What if a customer calls every day?",
    "What would you change in a support process?",
    "How do you write a clear email reply?",
    "How do you check that a problem is solved?",
    "What if two urgent tickets come in at once?",
    "What do you do when a customer is wrong?",
    "How do you take feedback from your lead?",
    "How do you stay calm on a busy day?",
    "What do you do when the system is down?",
    "What does great service mean to you?",
    "Why do you want this role?",
    "Do you have a question for us?",
)
ANSWERS = (  # 7-9 words, 1.9-2.9 s: a real answer for STT, short to keep the turns quick
    "I listen first, then I fix the problem.",
    "I check our knowledge base or ask a colleague.",
    "I explain the next steps and send a summary.",
    "I apologize and give a realistic new date.",
    "I write down every promise I make.",
    "I stay calm and escalate when it is urgent.",
)
# The model's first sentence is spoken on its own (12 characters or more), so a repeated one
# would come from the speech cache after its first use and cost nothing: 6 x 5 = 30 different
# acknowledgements, about as long as the scripted interviewer's (10-23 characters).
OPENERS = ("Thank you", "Thanks", "Great", "Got it", "I see", "Understood")
REMARKS = ("that is clear", "that helps", "good example", "that makes sense", "well put")


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def acknowledgement(n: int) -> str:
    return f"{OPENERS[n % len(OPENERS)]}, {REMARKS[n // len(OPENERS) % len(REMARKS)]}."


def instant_model() -> Callable[[dict[str, Any]], Behaviour]:
    """harness's rule-based model, streaming at once (no delay between pieces), with a
    different first sentence on each turn: "<acknowledgement> <the plan's next question>"."""
    counter: Iterator[int] = itertools.count()

    def model(body: dict[str, Any]) -> Behaviour:
        behaviour = respond(body)
        if isinstance(behaviour, ToolCall) and isinstance(behaviour.arguments, dict):
            arguments = dict(behaviour.arguments)
            # The stand-in says "Thank you, that helps. <question>": keep the question.
            _thanks, _, rest = str(arguments["say"]).partition(". ")
            arguments["say"] = f"{acknowledgement(next(counter))} {rest}".strip()
            behaviour = ToolCall(behaviour.name, arguments, chunks=behaviour.chunks, delay=0.0)
        return behaviour

    return model


def write_plan(directory: Path, questions: int) -> str:
    plan_id = "overhead-bench"
    plan = {
        "id": plan_id,
        "title": "Benchmark: short lines",
        "role": "Customer Support Specialist",
        "time_budget_minutes": 120,  # never over time: both interviewers keep asking
        "greeting": "Hello, this is a short practice interview.",
        "closing": "That is all, thank you. Goodbye.",
        "competencies": [
            {"id": "support", "name": "Support", "description": "Helps customers well."}
        ],
        "questions": [
            {"id": f"q{i + 1}", "text": text, "competency": "support"}
            for i, text in enumerate(QUESTIONS[:questions])
        ],
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{plan_id}.json").write_text(json.dumps(plan, indent=2))
    return plan_id


@dataclass
class Mode:
    name: str
    server: AppServer
    session: Session | None = None
    errors: list[str] = field(default_factory=list)
    answered: int = 0

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid


def server_for(mode: str, workdir: Path, plans: Path, plan_id: str, fake: FakeOpenAI) -> AppServer:
    env = {
        "DATABASE_URL": f"sqlite:///{workdir}/{mode}.db",
        # A fresh, empty cache per server: nothing synthesized by the other mode, by an earlier
        # run or in data/ is reused; the scripted lines are only ready because they are
        # prefetched while the candidate speaks, as in production.
        "SPEECH_CACHE_DIR": str(workdir / f"speech-cache-{mode}"),
        "PLANS_DIR": str(plans),
        "DEFAULT_PLAN_ID": plan_id,
        "VOICE_ENABLED": "true",
        "EVENTS_STREAM_SECONDS": "3600",
        "LOG_LEVEL": "INFO",
        "INTERVIEWER": mode,
    }
    if mode == "llm":
        env |= fake.env() | {"OPENAI_MODEL": MODEL, "REPORT_EVALUATION": "false"}
    return AppServer(workdir / f"server-{mode}.log", env)


@dataclass
class Usage:
    """CPU of the servers, of this process (clients and the local model server) and of
    everything else on the machine, in % of one core, between start() and stop()."""

    pids: list[int]
    at: float = 0.0
    servers: list[float] = field(default_factory=list)
    bench: float = 0.0
    ticks: tuple[int, int] = (0, 0)

    def start(self) -> Usage:
        self.at, self.ticks = time.monotonic(), machine_ticks()
        self.servers = [cpu_seconds(p) for p in self.pids]
        self.bench = cpu_seconds("self")
        return self

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self.at
        busy, total = machine_ticks()
        machine_pct = (busy - self.ticks[0]) / max(1, total - self.ticks[1]) * NPROC * 100
        servers = [
            (cpu_seconds(p) - s) / wall * 100 for p, s in zip(self.pids, self.servers, strict=True)
        ]
        bench = (cpu_seconds("self") - self.bench) / wall * 100
        return {
            "seconds": round(wall, 1),
            "servers_pct": dict(zip(MODES, (round(s, 1) for s in servers), strict=True)),
            "bench_pct": round(bench, 1),
            "machine_pct": round(machine_pct, 1),
            "other_pct": round(max(0.0, machine_pct - sum(servers) - bench), 1),
        }


STAGES = ("handoff_ms", "stt_ms", "interviewer_first_text_ms", "tts_first_audio_ms")


async def until_quiet(pids: list[int]) -> float:
    """Wait until every pid uses under QUIET_PCT of a core; returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < QUIET_MAX_SECONDS:
        before = [cpu_seconds(p) for p in pids]
        await asyncio.sleep(QUIET_WINDOW)
        used = [
            (cpu_seconds(p) - b) / QUIET_WINDOW * 100 for p, b in zip(pids, before, strict=True)
        ]
        if max(used) < QUIET_PCT:
            break
    return time.monotonic() - started


async def take_turn(mode: Mode, audio: Audio) -> None:
    assert mode.session is not None
    try:
        # The greeting was line 1, so the reply to answer k (from 0) is line k + 2.
        await answer(mode.session, audio, mode.answered + 2, REPLY_SILENCE)
        mode.answered += 1
    except (TimeoutError, VoiceClientError) as exc:
        mode.errors.append(f"answer {mode.answered + 1}: {exc!r}")
        print(f"!! {mode.name}: {mode.errors[-1]}", flush=True)


async def run(turns: int, workdir: Path) -> dict[str, Any]:
    started = time.monotonic()
    host, code = machine(), code_version()
    answers = [speech(text) for text in ANSWERS]
    # A reused --workdir must not hand this run an earlier run's speech cache or log lines.
    for mode in MODES:
        shutil.rmtree(workdir / f"speech-cache-{mode}", ignore_errors=True)
        (workdir / f"server-{mode}.log").unlink(missing_ok=True)
    plans = workdir / "plans"
    # Warm-up + measured answers, and one more question so no answer is met by the closing.
    plan_id = write_plan(plans, turns + 2)
    fake = FakeOpenAI()
    fake.chat.default = instant_model()
    fake.start()
    modes = [Mode(m, server_for(m, workdir, plans, plan_id, fake)) for m in MODES]
    try:
        print(">> starting a scripted and an LLM server (the speech models load)", flush=True)
        await asyncio.gather(*(asyncio.to_thread(m.server.start, 180) for m in modes))
        for m in modes:
            m.session = await open_session(m.server.api, f"overhead-{m.name}", plan_id)
        await asyncio.gather(
            *(m.session.hear_line(1, None, REPLY_SILENCE) for m in modes if m.session)
        )
        pids = [m.pid for m in modes]
        cpu = Usage(pids).start()
        waited: list[float] = []
        for k in range(turns + 1):  # turn 0 warms up each server and is not counted
            # Alternate which mode goes first, so neither always follows the other.
            for m in modes if k % 2 == 0 else modes[::-1]:
                if m.errors:
                    continue  # its line count is off after a failed turn: stop that mode
                waited.append(await until_quiet(pids))
                await take_turn(m, answers[k % len(answers)])
            print(f">> turn {k}/{turns} done" + (" (warm-up)" if k == 0 else ""), flush=True)
        usage = cpu.stop()
    finally:
        for m in modes:
            if m.session is not None:
                with contextlib.suppress(Exception):
                    await finish(m.server.api, m.session)
            m.server.stop()
        fake.stop()
    chats = [r for r in fake.chat_requests() if r.body.get("stream")]
    result: dict[str, Any] = {
        "machine": host | {"loadavg_at_end": loadavg()},
        "code": code,
        "config": {
            "turns_per_mode": turns,
            "warm_up_turns": 1,
            "plan_questions": turns + 2,
            "answer_seconds": [round(a.size / 48_000, 2) for a in answers],
            "reply_silence_seconds": REPLY_SILENCE,
            "model": MODEL,
        },
        "cpu_during_turns": usage,
        "quiet_wait_seconds_p50": median(waited),
        "modes": {m.name: summarize(m) for m in modes},
        "llm_requests": len(chats),
    }
    scripted, llm = (result["modes"][m]["overhead_ms"].get("p50") for m in MODES)
    result["ratio_llm_to_scripted_p50"] = round(llm / scripted, 2) if llm and scripted else None
    result["runtime_seconds"] = round(time.monotonic() - started, 1)
    return result


def summarize(mode: Mode) -> dict[str, Any]:
    log = mode.server.log()
    session_id = mode.session.id if mode.session else None
    timings = [t for t in log_events(log, "reply_timing") if t.get("session_id") == session_id]
    replies = [
        {
            **{k: t.get(k) for k in ("end_of_turn_ms", *STAGES, "total_ms")},
            "overhead_ms": t["total_ms"] - t["end_of_turn_ms"],
        }
        for t in timings[1:]  # the first is the warm-up turn
    ]
    overhead = [r["overhead_ms"] for r in replies]
    v2v = [round(s * 1000) for s in (mode.session.latencies[1:] if mode.session else [])]
    first_audio = [e for e in log_events(log, "first_audio") if e.get("session_id") == session_id]
    first_audio = first_audio[2:]  # after the greeting's and the warm-up turn's
    return {
        "replies": replies,
        "errors": mode.errors,
        "overhead_ms": {
            "n": len(overhead),
            "p50": median(overhead),
            "p95": pct(overhead, 95),
            "max": max(overhead) if overhead else None,
        },
        "stage_p50_ms": {k: median([r[k] for r in replies if r[k] is not None]) for k in STAGES},
        "voice_to_voice_p50_ms": median(v2v),
        # How often the reply's first piece of speech was ready (prefetched or cached).
        "first_piece_ready": sum(1 for e in first_audio if e.get("cached")),
        "llm_turn_failures": len(log_events(log, "llm_turn_failed")),
    }


# -- report ----------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def markdown(result: dict[str, Any]) -> str:
    m, code, cpu = result["machine"], result["code"], result["cpu_during_turns"]
    dirty = code.get("uncommitted")
    lines = [
        f"Last run {m['date']} on commit {code.get('commit', '?')[:10]}"
        + (f" with uncommitted changes to {', '.join(dirty)}" if dirty else "")
        + f": {m['nproc']} x {m['cpu_model']}, load average {' '.join(m['loadavg_at_start'])} "
        f"at start and {' '.join(m['loadavg_at_end'])} at the end; "
        f"{result['runtime_seconds']:.0f} s.",
        "",
        "Server-side, from the end of the turn (the detector's decision) to the first reply audio, "
        "in ms; one session per server, the turns alternating between the servers.",
        "",
        "| Interviewer | Turns | p50 | p95 | max | handoff p50 | STT p50 | interviewer p50 "
        "| TTS first audio p50 | first piece ready | voice-to-voice p50 | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, mode in result["modes"].items():
        o, st = mode["overhead_ms"], mode["stage_p50_ms"]
        lines.append(
            "| "
            + " | ".join(
                [
                    name,
                    str(o["n"]),
                    _ms(o.get("p50")),
                    _ms(o.get("p95")),
                    _ms(o.get("max")),
                    *(_ms(st[k]) for k in STAGES),
                    f"{mode['first_piece_ready']}/{o['n']}",
                    _ms(mode["voice_to_voice_p50_ms"]),
                    str(len(mode["errors"]) + mode["llm_turn_failures"]),
                ]
            )
            + " |"
        )
    ratio = result["ratio_llm_to_scripted_p50"]
    servers = cpu["servers_pct"]
    lines += [
        "",
        f"LLM / scripted, ratio of the p50s: **{ratio}**"
        + (f" ({result['llm_requests']} streamed chat completions)." if ratio else "."),
        f"CPU in % of one core over the {cpu['seconds']:.0f} s of turns: scripted server "
        f"{servers['scripted']:.0f}, LLM server {servers['llm']:.0f}, the benchmark's clients and "
        f"local model server {cpu['bench_pct']:.0f}, other processes {cpu['other_pct']:.0f} "
        f"(machine {cpu['machine_pct']:.0f} of {m['nproc'] * 100}).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--turns",
        type=int,
        default=DEFAULT_TURNS,
        help=f"measured turns per mode (at most {len(QUESTIONS) - 2}); 3 for a quick check",
    )
    parser.add_argument("--no-write", action="store_true", help="print, do not write results")
    parser.add_argument("--workdir", type=Path, help="keep the databases and server logs here")
    args = parser.parse_args()
    if not 1 <= args.turns <= len(QUESTIONS) - 2:
        parser.error(f"--turns must be 1-{len(QUESTIONS) - 2}")
    with tempfile.TemporaryDirectory(prefix="spool-llm-bench-") as temp:
        workdir = args.workdir or Path(temp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            result = asyncio.run(run(args.turns, workdir))
        except BaseException:
            for log in sorted(workdir.glob("server-*.log")):
                print(f"{log.name} (tail):\n" + "\n".join(log.read_text().splitlines()[-30:]))
            raise
    table = markdown(result)
    print(table)
    output = json.dumps(result, indent=2) + "\n"
    if args.workdir:
        (workdir / "llm_overhead.json").write_text(output)
    if not args.no_write:
        publish(RESULTS_PATH, output, table, BEGIN_MARK, END_MARK)


if __name__ == "__main__":
    main()
