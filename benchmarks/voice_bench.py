"""Voice pipeline benchmark: the real server, aiortc clients speaking espeak-ng answers.

    make bench      # or: .venv/bin/python -m benchmarks.voice_bench [--sessions 1,4,8]

Starts `python app.py` (SQLite in a temp dir, voice on, the scripted interviewer), then for 1, 4
and 8 concurrent sessions: connects them (timing the offer POST), waits for the greeting, samples
the server's CPU over a stretch of silence, and has every session answer three questions,
timing each reply from the last speech sample sent to the first audible sample received. The
server's per-reply `reply_timing` log lines give the stage breakdown. Then, in the same run, a
second server with the old end of turn (END_OF_TURN_POLICY=silence, a fixed 0.8 s) answers the
same questions with 1 and 4 sessions, as the baseline the evidence policy is compared with.
Everything is written to benchmarks/results/voice.json and the table in benchmarks/README.md.

Numbers are reported, never asserted: the machine may be shared, so look at medians and ratios.
CPU and memory come from /proc (Linux only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from benchmarks.tables import fmt, row
from harness.app_server import AppServer
from harness.kokoro_speech import kokoro_speech
from harness.sse import read_events
from harness.voice_client import VoiceClient, VoiceClientError, start_session

HERE = Path(__file__).resolve().parent
RESULTS_PATH = HERE / "results" / "voice.json"
README_PATH = HERE / "README.md"
BEGIN_MARK, END_MARK = "<!-- bench:begin -->", "<!-- bench:end -->"

PLAN = "customer-support-screen"  # four questions: three answers never reach the closing line
ANSWERS_PER_SESSION = 3
# The end-of-turn policies run side by side: the default (issue 11's evidence: Smart Turn + the
# words + a patient fallback) and the fixed silence of before, as the baseline.
POLICY = "evidence"
BASELINE_POLICY = "silence"
POLICY_ENV = {
    POLICY: {"END_OF_TURN_POLICY": "evidence"},
    BASELINE_POLICY: {"END_OF_TURN_POLICY": "silence", "END_OF_TURN_SILENCE_SECONDS": "0.8"},
}
# Each session starts answering this much later than the one before, so the sessions do not
# all finish speaking in the same 20 ms (real candidates are not synchronized).
STAGGER_SECONDS = 1.0
REPLY_SILENCE = 1.5  # the interviewer's turn is over after this much silence
# Finished sentences only: an answer whose last words read as unfinished waits for the patient
# fallback (2.5 s) under the evidence policy, which this benchmark is not about. Said by two
# Kokoro voices in turn (not the plan's own): Smart Turn scores 0.8-0.99 on every one of them,
# where on espeak-ng's flat prosody it objects (< 0.02) to two of the six, and each of those then
# waits 2.5 s (benchmarks/README.md, "Voice-to-voice with the evidence policy").
ANSWER_VOICES = ("am_michael", "bf_emma")
ANSWERS = (
    "I calmed the customer down, refunded the order and called her back the next day.",
    "I tell the customer that I will check with my team and call them back today.",
    "I would say the bank had an outage and their money is safe with us.",
    "We kept getting the same login question, so I wrote a short help article.",
    "The customer was angry about a late delivery, so I listened and apologized first.",
    "I search our knowledge base, and if nothing fits I escalate to the product team.",
)
STAGES = (
    "end_of_turn_ms",
    "handoff_ms",
    "stt_ms",
    "interviewer_first_text_ms",
    "tts_first_audio_ms",
)
TARGETS = {  # issue 11's (the latency and idle CPU ones were 1.5 s, 2.5 s and 3 % before)
    "v2v_p50_1_s": 0.7,
    "v2v_p95_8_s": 1.2,
    "idle_cpu_pct_per_session": 2.0,
    "offer_ms": 300.0,
    "rss_base_mb": 1500.0,
    "rss_per_session_mb": 30.0,
}
CLK_TCK = os.sysconf("SC_CLK_TCK")
NPROC = os.cpu_count() or 1

Audio = npt.NDArray[np.int16]


# -- /proc -----------------------------------------------------------------------------------


def cpu_seconds(pid: int | str) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores together, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass
class CpuWindow:
    """CPU use between start() and stop(), as % of one core."""

    pid: int
    started: float = 0.0
    server: float = 0.0
    bench: float = 0.0
    ticks: tuple[int, int] = (0, 0)

    def start(self) -> CpuWindow:
        self.started = time.monotonic()
        self.server, self.bench = cpu_seconds(self.pid), cpu_seconds("self")
        self.ticks = machine_ticks()
        return self

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.started
        busy, total = machine_ticks()
        server = (cpu_seconds(self.pid) - self.server) / wall * 100
        bench = (cpu_seconds("self") - self.bench) / wall * 100
        machine = (busy - self.ticks[0]) / max(1, total - self.ticks[1]) * NPROC * 100
        return {
            "seconds": round(wall, 2),
            "server_pct": round(server, 2),
            "bench_client_pct": round(bench, 2),
            "machine_pct": round(machine, 2),
            # Whatever else ran meanwhile (another test run on a shared machine).
            "other_pct": round(max(0.0, machine - server - bench), 2),
        }


async def sample_cpu(pid: int, seconds: float) -> dict[str, float]:
    window = CpuWindow(pid).start()
    await asyncio.sleep(seconds)
    return window.stop()


# -- sessions --------------------------------------------------------------------------------


class OfferTimer(httpx.AsyncClient):
    """An HTTP client that times the POST of the SDP offer that VoiceClient.connect makes."""

    def __init__(self) -> None:
        super().__init__(timeout=30.0, trust_env=False)
        self.offer_ms: float | None = None

    async def post(self, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
        started = time.perf_counter()
        response = await super().post(url, **kwargs)
        if str(url).endswith("/rtc/offer"):
            self.offer_ms = (time.perf_counter() - started) * 1000
        return response


@dataclass
class Session:
    id: str
    token: str
    client: VoiceClient
    offer_ms: float
    connect_ms: float  # POST /start done -> ICE+DTLS connected and the data channel open
    connected_at: float  # time.monotonic()
    latencies: list[float] = field(default_factory=list)  # seconds, client-measured
    # Seconds from the end of the speech to the reply's first frame, loud or not: the server
    # sends no RTP while silent, so the rest of the latency is quiet lead-in of the reply audio.
    first_frames: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # When each interviewer line had been handed to the connection in full (its "speaking"
    # "queued" event arrived): silence after that is the end of the line, where a pause before
    # it may only be text-to-speech falling behind (a cold cache on two cores).
    queued: list[float] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    follower: asyncio.Task[None] | None = None

    async def follow_events(self, api: str) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        timeout = httpx.Timeout(15.0, read=None)
        async with (
            httpx.AsyncClient(timeout=timeout, trust_env=False) as http,
            http.stream("GET", f"{api}/{self.id}/events", headers=headers) as response,
        ):
            async for event in read_events(response):
                if event.event == "speaking" and event.data.get("state") == "queued":
                    async with self.changed:
                        self.queued.append(time.monotonic())
                        self.changed.notify_all()

    async def hear_line(
        self, number: int, after: float | None, silence: float = REPLY_SILENCE
    ) -> tuple[float, float]:
        """(first loud frame, last loud frame) of the interviewer's `number`th line (from 1)."""
        started = await self.client.wait_for_speech(60, after=after)
        async with asyncio.timeout(120), self.changed:
            await self.changed.wait_for(lambda: len(self.queued) >= number)
        queued = self.queued[number - 1]
        return started, await self.client.wait_for_silence(silence, 60, after=queued)


async def open_session(api: str, label: str, plan: str = PLAN) -> Session:
    session_id, token = await start_session(api, user_id=label, plan_id=plan)
    started = time.perf_counter()
    async with OfferTimer() as http:
        client = await VoiceClient.connect(api, session_id, token, http=http, connect_timeout=30)
    assert http.offer_ms is not None
    connect_ms = (time.perf_counter() - started) * 1000
    session = Session(session_id, token, client, http.offer_ms, connect_ms, time.monotonic())
    session.follower = asyncio.create_task(session.follow_events(api))
    return session


async def answer(
    session: Session, audio: Audio, line: int, reply_silence: float = REPLY_SILENCE
) -> None:
    """Say one answer and wait until the interviewer's `line`th line (from 1) has ended,
    recording the latency of its first audible frame. Raises TimeoutError, VoiceClientError."""
    client = session.client
    said = await client.say(audio, trailing_silence=reply_silence)
    assert said.speech_ended_at is not None
    heard, _ended = await session.hear_line(line, after=said.speech_ended_at, silence=reply_silence)
    first = await client.wait_for_speech(1, after=said.speech_ended_at, threshold=-1.0)
    session.latencies.append(heard - said.speech_ended_at)
    session.first_frames.append(first - said.speech_ended_at)


async def converse(session: Session, answers: list[Audio], delay: float) -> None:
    """Answer the questions one by one, each after the previous reply has finished."""
    await asyncio.sleep(delay)
    for line, audio in enumerate(answers, start=2):  # the greeting was line 1
        try:
            await answer(session, audio, line)
        except (TimeoutError, VoiceClientError) as exc:
            session.errors.append(f"answer {len(session.latencies) + 1}: {exc}")
            print(f"!! session {session.id}: {session.errors[-1]}", flush=True)
            return


async def finish(api: str, session: Session) -> None:
    async with httpx.AsyncClient(timeout=15.0, trust_env=False) as http:
        await http.post(
            f"{api}/{session.id}/end", headers={"Authorization": f"Bearer {session.token}"}
        )
    await session.client.close()
    if session.follower is not None:
        session.follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await session.follower


async def live_connections(api: str) -> int:
    async with httpx.AsyncClient(timeout=10.0, trust_env=False) as http:
        detail = (await http.get(f"{api}/health")).json()["checks"]["voice"]["detail"]
    found = re.search(r"(\d+) live connections", detail)
    return int(found.group(1)) if found else -1


async def wait_disconnected(api: str, attempts: int = 100) -> None:
    """Until the server has closed every peer connection (0.2 s apart, at most `attempts`)."""
    for _ in range(attempts):
        if await live_connections(api) <= 0:
            return
        await asyncio.sleep(0.2)


@dataclass
class Round:
    sessions: list[Session]
    measured: dict[str, Any]


async def run_round(
    server: AppServer,
    count: int,
    answers: list[Audio],
    idle_seconds: float,
    cold: bool = False,
    policy: str = POLICY,
) -> Round:
    """Connect `count` sessions, let them greet, sample CPU in silence, then converse."""
    assert server.process is not None
    pid = server.process.pid
    label = f"{policy}, {count} session(s)" + (" (cold TTS cache, warm-up)" if cold else "")
    rss_before = memory_mb(pid)
    print(f">> {label}: connecting", flush=True)
    sessions = list(
        await asyncio.gather(
            *(open_session(server.api, f"bench-{policy}-{count}-{i}") for i in range(count))
        )
    )
    try:
        greetings = await asyncio.gather(*(s.hear_line(1, after=None) for s in sessions))
        rss_connected = memory_mb(pid)
        idle: dict[str, float] | None = None
        if idle_seconds > 0:
            print(f">> {label}: silent for {idle_seconds:.0f} s", flush=True)
            idle = await sample_cpu(pid, idle_seconds)
        print(f">> {label}: answering", flush=True)
        window = CpuWindow(pid).start()
        await asyncio.gather(
            *(
                converse(
                    s,
                    [answers[(i + k) % len(answers)] for k in range(ANSWERS_PER_SESSION)],
                    i * STAGGER_SECONDS,
                )
                for i, s in enumerate(sessions)
            )
        )
        active = window.stop()
        rss_after = memory_mb(pid)
        if cold:
            await settle(pid)
    finally:
        await asyncio.gather(*(finish(server.api, s) for s in sessions))
        await wait_disconnected(server.api)
    return Round(
        sessions,
        {
            "policy": policy,
            "sessions": count,
            "cold_cache": cold,
            "greeting_seconds": [round(end - start, 2) for start, end in greetings],
            # Connected (ICE + DTLS + data channel) -> first audible greeting sample.
            "greeting_delay_ms": [
                round((start - s.connected_at) * 1000)
                for (start, _end), s in zip(greetings, sessions, strict=True)
            ],
            "cpu_idle": idle,
            "cpu_active": active,
            "rss_mb": {
                "before": round(rss_before, 1),
                "connected": round(rss_connected, 1),
                "after_answers": round(rss_after, 1),
                "peak_so_far": round(memory_mb(pid, "VmHWM"), 1),
            },
        },
    )


def answer_audio() -> list[Audio]:
    """The answers, each in one of ANSWER_VOICES (cached on disk once made)."""
    return [
        kokoro_speech(text, voice=ANSWER_VOICES[i % len(ANSWER_VOICES)])
        for i, text in enumerate(ANSWERS)
    ]


async def settle(pid: int, below_pct: float = 30.0, max_seconds: int = 60) -> None:
    """Until the server's CPU use drops for 2 s (the prefetch of the next lines is done)."""
    quiet = 0
    for _ in range(max_seconds):
        quiet = quiet + 1 if (await sample_cpu(pid, 1.0))["server_pct"] < below_pct else 0
        if quiet >= 2:
            return


# -- results ---------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def median(values: Sequence[float]) -> float | None:
    return pct(values, 50)


def log_events(log: str, name: str) -> list[dict[str, Any]]:
    events = []
    for line in log.splitlines():
        if name not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == name:
            events.append(record)
    return events


def summarize(rounds: list[Round], log: str, baseline: dict[str, float]) -> list[dict[str, Any]]:
    timings = log_events(log, "reply_timing")
    handled = {e["session_id"]: e["offer_ms"] for e in log_events(log, "voice_offer_answered")}
    requests = {
        e.get("session_id"): e["duration_ms"]
        for e in log_events(log, "request")
        if str(e.get("path", "")).endswith("/rtc/offer")
    }
    out = []
    for rnd in rounds:
        n = rnd.measured["sessions"]
        replies: list[dict[str, Any]] = []
        for index, session in enumerate(rnd.sessions):
            server = [t for t in timings if t["session_id"] == session.id]
            for answer, latency in enumerate(session.latencies):
                reply: dict[str, Any] = {
                    "session": index,
                    "answer": answer + 1,
                    "v2v_ms": round(latency * 1000),
                    "lead_in_ms": round((latency - session.first_frames[answer]) * 1000),
                }
                if answer < len(server):
                    reply.update({k: server[answer].get(k) for k in (*STAGES, "total_ms")})
                    reply["transport_ms"] = reply["v2v_ms"] - server[answer]["total_ms"]
                replies.append(reply)
        v2v = [r["v2v_ms"] for r in replies]
        offers = [s.offer_ms for s in rnd.sessions]
        idle, active = rnd.measured["cpu_idle"], rnd.measured["cpu_active"]
        rss = rnd.measured["rss_mb"]
        out.append(
            {
                **rnd.measured,
                "replies": replies,
                "errors": [e for s in rnd.sessions for e in s.errors],
                "v2v_ms": {"n": len(v2v), "p50": median(v2v), "p95": pct(v2v, 95), "max": max(v2v)}
                if v2v
                else {"n": 0},
                "stage_medians_ms": {
                    k: median([r[k] for r in replies if r.get(k) is not None])
                    for k in (*STAGES, "total_ms", "transport_ms", "lead_in_ms")
                },
                "offer_ms": {
                    "client": [round(o, 1) for o in offers],
                    # The request as the server logs it, and aiortc's handle_offer within it.
                    "server_request": [requests.get(s.id) for s in rnd.sessions],
                    "server": [handled.get(s.id) for s in rnd.sessions],
                    "p50": median(offers),
                    "p95": pct(offers, 95),
                },
                "connect_ms_p50": median([s.connect_ms for s in rnd.sessions]),
                "idle_cpu_pct_per_session": (
                    round((idle["server_pct"] - baseline["server_pct"]) / n, 2) if idle else None
                ),
                "active_cpu_pct_per_session": round(
                    (active["server_pct"] - baseline["server_pct"]) / n, 2
                ),
                "rss_mb_per_session": round((rss["connected"] - rss["before"]) / n, 1),
            }
        )
    return out


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    mem = re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.MULTILINE)
    return {
        "nproc": NPROC,
        "cpu_model": model.group(1).strip() if model else platform.processor(),
        "memory_gb": round(int(mem.group(1)) / 1024**2, 1) if mem else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def code_version() -> dict[str, Any]:
    """The commit measured, and the server files that differed from it when the run began."""
    git = shutil.which("git")
    if git is None:
        return {}

    def run(*args: str) -> str:
        done = subprocess.run([git, *args], cwd=HERE.parent, capture_output=True, text=True)  # noqa: S603
        return done.stdout.rstrip()

    paths = ["interview", "app.py", "requirements.txt", "constraints.txt"]
    changed = run("status", "--porcelain", "--", *paths).splitlines()
    return {"commit": run("rev-parse", "HEAD"), "uncommitted": [ln[3:] for ln in changed]}


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    by_n = {
        r["sessions"]: r
        for r in result["rounds"]
        if not r["cold_cache"] and r.get("policy", POLICY) == POLICY
    }
    rows: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, unit: str, note: str = "") -> None:
        holds = None if value is None else value <= limit
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

    if 1 in by_n:
        add(
            "Voice-to-voice p50, 1 session",
            by_n[1]["v2v_ms"].get("p50"),
            TARGETS["v2v_p50_1_s"] * 1000,
            "ms",
            f"n={by_n[1]['v2v_ms']['n']}",
        )
    if 8 in by_n:
        add(
            "Voice-to-voice p95, 8 sessions",
            by_n[8]["v2v_ms"].get("p95"),
            TARGETS["v2v_p95_8_s"] * 1000,
            "ms",
            f"n={by_n[8]['v2v_ms']['n']}",
        )
    idle = {n: r["idle_cpu_pct_per_session"] for n, r in by_n.items()}
    worst = max(idle, key=lambda n: idle[n])
    add(
        "Idle CPU per connected session (worst N)",
        idle[worst],
        TARGETS["idle_cpu_pct_per_session"],
        "% of a core",
        f"at N={worst}",
    )
    offers = [o for r in by_n.values() for o in r["offer_ms"]["client"]]
    add(
        "Offer -> answer p95 (no TURN)",
        pct(offers, 95),
        TARGETS["offer_ms"],
        "ms",
        f"p50 {pct(offers, 50)} ms, n={len(offers)}",
    )
    for n, r in sorted(by_n.items()):
        limit = TARGETS["rss_base_mb"] + TARGETS["rss_per_session_mb"] * n
        add(
            f"Peak RSS with {n} session(s)",
            r["rss_mb"]["peak_so_far"],
            limit,
            "MB",
            f"+{r['rss_mb_per_session']} MB per session",
        )
    return rows


# -- report ----------------------------------------------------------------------------------


def _label(r: dict[str, Any]) -> str:
    sessions = f"{r['sessions']} (cold cache)" if r["cold_cache"] else str(r["sessions"])
    return f"{r.get('policy', POLICY)}, {sessions}"


def _ratio(new: float | None, old: float | None) -> str:
    return f"{new / old:.2f}" if new is not None and old else "-"


def policy_comparison(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per session count run under both policies: p50/p95 of each and new / old."""
    warm = [r for r in rounds if not r["cold_cache"]]
    new = {r["sessions"]: r for r in warm if r.get("policy", POLICY) == POLICY}
    old = {r["sessions"]: r for r in warm if r.get("policy") == BASELINE_POLICY}
    rows = []
    for n in sorted(new.keys() & old.keys()):
        a, b = new[n], old[n]
        row: dict[str, Any] = {"sessions": n}
        for key in ("p50", "p95"):
            row[f"{POLICY}_{key}"] = a["v2v_ms"].get(key)
            row[f"{BASELINE_POLICY}_{key}"] = b["v2v_ms"].get(key)
            x, y = a["v2v_ms"].get(key), b["v2v_ms"].get(key)
            row[f"ratio_{key}"] = round(x / y, 2) if x is not None and y else None
        row["end_of_turn_ms"] = {
            POLICY: a["stage_medians_ms"]["end_of_turn_ms"],
            BASELINE_POLICY: b["stage_medians_ms"]["end_of_turn_ms"],
        }
        rows.append(row)
    return rows


def markdown(result: dict[str, Any]) -> str:
    m, base, rounds = result["machine"], result["baseline_idle"], result["rounds"]
    code = result["code"]
    dirty = code.get("uncommitted")
    lines = [
        f"Last run {m['date']} on commit {code.get('commit', '?')[:10]}"
        + (f" with uncommitted changes to {', '.join(code['uncommitted'])}" if dirty else "")
        + f": {m['nproc']} x {m['cpu_model']}, Python {m['python']}, load average at start "
        f"{' '.join(m['loadavg_at_start'])}; the benchmark took {result['runtime_seconds']:.0f} s.",
        "",
        "| Target | Measured | Limit | Holds | Note |",
        "|---|---|---|---|---|",
    ]
    for t in result["targets"]:
        holds = {True: "yes", False: "**no**", None: "-"}[t["holds"]]
        unit = t["unit"]
        lines.append(
            row(
                t["target"],
                f"{fmt(t['value'])} {unit}",
                f"{fmt(t['limit'])} {unit}",
                holds,
                t["note"],
            )
        )
    lines += [
        "",
        f"The end of turn side by side in this run: `{POLICY}` (the default, issue 11) against "
        f"`{BASELINE_POLICY}` (END_OF_TURN_POLICY=silence, END_OF_TURN_SILENCE_SECONDS=0.8, the "
        "behaviour before it), same answers, same machine, one server after the other. Ratio = "
        f"{POLICY} / {BASELINE_POLICY}.",
        "",
        f"| Sessions | {POLICY} p50 | {BASELINE_POLICY} p50 | ratio p50 | {POLICY} p95 "
        f"| {BASELINE_POLICY} p95 | ratio p95 | end of turn median ({POLICY} / "
        f"{BASELINE_POLICY}) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in result["policy_comparison"]:
        eot = c["end_of_turn_ms"]
        lines.append(
            row(
                c["sessions"],
                c[f"{POLICY}_p50"],
                c[f"{BASELINE_POLICY}_p50"],
                c["ratio_p50"],
                c[f"{POLICY}_p95"],
                c[f"{BASELINE_POLICY}_p95"],
                c["ratio_p95"],
                f"{fmt(eot[POLICY])} / {fmt(eot[BASELINE_POLICY])} ms",
            )
        )
    lines += [
        "",
        "Voice-to-voice latency (ms) and the median of each stage. Server stages come from its "
        "`reply_timing` log line; transport = client-measured minus the server's `total_ms`, and "
        "lead-in = the part of the client-measured time between the reply's first frame and its "
        "first audible one.",
        "",
        "| Policy, sessions | Replies | p50 | p95 | max | end of turn | handoff | STT "
        "| interviewer | TTS first audio | server total | transport | lead-in | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rounds:
        v, st = r["v2v_ms"], r["stage_medians_ms"]
        stages = [st[k] for k in (*STAGES, "total_ms", "transport_ms", "lead_in_ms")]
        lines.append(
            row(
                _label(r),
                v.get("n"),
                v.get("p50"),
                v.get("p95"),
                v.get("max"),
                *stages,
                len(r["errors"]),
            )
        )
    lines += [
        "",
        "Server CPU in % of one core, over silence (after the greetings) and over the answers; "
        "per session = (server - idle server with no session) / N. The benchmark's own clients "
        "and whatever else ran on the machine are shown for context.",
        "",
        "| Policy, sessions | Silent: server | per session | Answering: server | per session "
        "| bench clients | other processes |",
        "|---|---|---|---|---|---|---|",
        row(
            "no session",
            base["server_pct"],
            "-",
            "-",
            "-",
            base["bench_client_pct"],
            base["other_pct"],
        ),
    ]
    for r in rounds:
        idle, active = r["cpu_idle"] or {}, r["cpu_active"]
        lines.append(
            row(
                _label(r),
                idle.get("server_pct"),
                r["idle_cpu_pct_per_session"],
                active["server_pct"],
                r["active_cpu_pct_per_session"],
                active["bench_client_pct"],
                active["other_pct"],
            )
        )
    after = result["idle_after"]
    lines += [
        "",
        f"Idle server after every session ended: {after['server_pct']:.1f} % of a core.",
        "",
        "Signaling and memory: offer POST -> answer as the client times it, then the medians of "
        "the request as the server logs it and of aiortc's `handle_offer` within it; /start -> "
        "connected; connected -> first greeting audio; "
        f"RSS in MB ({fmt(result['rss_mb_start'])} MB once the models are loaded).",
        "",
        "| Policy, sessions | Offer p50 / p95 ms | server request / handle_offer p50 ms "
        "| Connect p50 ms | Greeting delay p50 ms "
        "| RSS before -> connected | MB per session | Peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rounds:
        o, rss = r["offer_ms"], r["rss_mb"]
        request = median([x for x in o["server_request"] if x is not None])
        server = median([x for x in o["server"] if x is not None])
        lines.append(
            row(
                _label(r),
                f"{fmt(o['p50'])} / {fmt(o['p95'])}",
                f"{fmt(request)} / {fmt(server)}",
                r["connect_ms_p50"],
                median(r["greeting_delay_ms"]),
                f"{fmt(rss['before'])} -> {fmt(rss['connected'])}",
                r["rss_mb_per_session"],
                rss["peak_so_far"],
            )
        )
    lines += ["", "What the median voice-to-voice time is made of, largest first:", ""]
    for r in rounds:
        st, p50 = r["stage_medians_ms"], r["v2v_ms"].get("p50")
        parts = [
            (k.removesuffix("_ms").replace("_", " "), st[k]) for k in (*STAGES, "transport_ms")
        ]
        parts = sorted((p for p in parts if p[1] is not None), key=lambda p: -p[1])
        if p50:
            text = ", ".join(f"{name} {value:.0f} ms ({value / p50:.0%})" for name, value in parts)
            lines.append(f"- {_label(r)} session(s), p50 {p50:.0f} ms: {text}")
    return "\n".join(lines)


def write_readme(table: str, begin: str = BEGIN_MARK, end: str = END_MARK) -> None:
    """Replace what lies between the `begin` and `end` marks of the README with `table`
    (the marks are appended first when missing)."""
    text = README_PATH.read_text() if README_PATH.exists() else ""
    if begin not in text:
        text = f"{text.rstrip()}\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _old, tail = rest.split(end, 1)
    README_PATH.write_text(f"{head}{begin}\n{table}\n{end}{tail}")


def publish(path: Path, output: str, table: str, begin: str, end: str) -> None:
    """Write a benchmark's results file and its table between its marks in the README."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(output)
    write_readme(table, begin, end)
    print(f">> wrote {path.relative_to(HERE.parent)} and the table in README")


# -- main ------------------------------------------------------------------------------------


def bench_server(workdir: Path, policy: str, counts: list[int]) -> AppServer:
    return AppServer(
        workdir / f"server-{policy}.log",
        {
            "DATABASE_URL": f"sqlite:///{workdir}/bench-{policy}.db",
            # Empty, so the first interview really synthesizes its lines; nothing left in data/.
            # The baseline's server, started second, finds them there.
            "SPEECH_CACHE_DIR": str(workdir / "speech-cache"),
            "VOICE_ENABLED": "true",
            "EVENTS_STREAM_SECONDS": "3600",  # one event stream per session for the whole run
            "MAX_CONCURRENT_INTERVIEWS": str(max(8, *counts)),
            "LOG_LEVEL": "INFO",
            **POLICY_ENV[policy],
        },
    )


async def baseline_rounds(
    workdir: Path, counts: list[int], answers: list[Audio], baseline: dict[str, float]
) -> list[dict[str, Any]]:
    """The same rounds against a server with the fixed-silence end of turn (no idle windows:
    the policy changes nothing while nobody speaks)."""
    if not counts:
        return []
    server = bench_server(workdir, BASELINE_POLICY, counts)
    print(f">> starting the {BASELINE_POLICY} baseline's server", flush=True)
    server.start(timeout=180)
    try:
        await asyncio.sleep(2)
        rounds = [await run_round(server, n, answers, 0, policy=BASELINE_POLICY) for n in counts]
    finally:
        server.stop()
    return summarize(rounds, server.log(), baseline)


async def bench(
    counts: list[int], baseline_counts: list[int], idle_seconds: float, workdir: Path
) -> dict[str, Any]:
    started = time.monotonic()
    host, code = machine(), code_version()  # before anything else runs or changes
    answers = answer_audio()
    server = bench_server(workdir, POLICY, counts)
    print(">> starting the server (the speech models load first)", flush=True)
    server.start(timeout=180)
    assert server.process is not None
    try:
        ready_seconds = round(time.monotonic() - started, 1)
        await asyncio.sleep(2)  # let start-up work settle
        rss_start = memory_mb(server.process.pid)
        print(f">> idle server, no sessions: {idle_seconds:.0f} s", flush=True)
        baseline = await sample_cpu(server.process.pid, idle_seconds)
        # A first interview fills the speech cache with every line of the plan it hears, as
        # any server that has run the plan before has; its numbers are kept apart.
        rounds = [await run_round(server, 1, answers, 0, cold=True)]
        rounds += [await run_round(server, n, answers, idle_seconds) for n in counts]
        await asyncio.sleep(2)
        idle_after = await sample_cpu(server.process.pid, idle_seconds / 2)
    finally:
        server.stop()
    summary = summarize(rounds, server.log(), baseline)
    summary += await baseline_rounds(workdir, baseline_counts, answers, baseline)
    result: dict[str, Any] = {
        "machine": host,
        "code": code,
        "config": {
            "plan": PLAN,
            "policies": POLICY_ENV,
            "answer_voices": ANSWER_VOICES,
            "answers_per_session": ANSWERS_PER_SESSION,
            "stagger_seconds": STAGGER_SECONDS,
            "idle_sample_seconds": idle_seconds,
            "answer_seconds": [round(a.size / 48_000, 2) for a in answers],
        },
        "server_ready_seconds": ready_seconds,
        "rss_mb_start": round(rss_start, 1),
        "baseline_idle": baseline,
        "idle_after": idle_after,
        "rounds": summary,
    }
    result["policy_comparison"] = policy_comparison(summary)
    result["targets"] = targets(result)
    result["runtime_seconds"] = round(time.monotonic() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", default="1,4,8", help="concurrency levels, e.g. 1,4,8")
    parser.add_argument(
        "--baseline-sessions",
        default="1,4",
        help=f"concurrency levels run again with the {BASELINE_POLICY} policy ('' for none)",
    )
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--no-write", action="store_true", help="print, do not write results")
    parser.add_argument("--workdir", type=Path, help="keep the database and server.log here")
    args = parser.parse_args()
    counts = [int(n) for n in args.sessions.split(",")]
    baseline_counts = [int(n) for n in args.baseline_sessions.split(",") if n.strip()]
    with tempfile.TemporaryDirectory(prefix="spool-bench-") as temp:
        workdir = args.workdir or Path(temp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            result = asyncio.run(bench(counts, baseline_counts, args.idle_seconds, workdir))
        except BaseException:
            for log in sorted(workdir.glob("server-*.log")):
                print(f"{log.name} (tail):\n" + "\n".join(log.read_text().splitlines()[-40:]))
            raise
    table = markdown(result)
    print(table)
    output = json.dumps(result, indent=2) + "\n"
    if args.workdir:
        (workdir / "voice.json").write_text(output)
    if not args.no_write:
        publish(RESULTS_PATH, output, table, BEGIN_MARK, END_MARK)


if __name__ == "__main__":
    main()
