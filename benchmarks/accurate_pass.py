"""What the accurate pass costs the live conversation, and how soon the report follows the end of
an interview (issue 14's round of `make bench`).

    .venv/bin/python -m benchmarks.accurate_pass [--rounds 1 --single-rounds 2 --modes on,off]

Two servers run side by side (SQLite each, voice on, the scripted interviewer, plan
customer-support-screen): one with the accurate pass (the default settings), one with
ACCURATE_STT_MODEL=off. Rounds alternate between them (on, off, then off, on, ...) so both see
the same machine: 8 aiortc sessions answer three questions each (the Kokoro answers and the
timing of benchmarks/voice_bench.py: from the last speech sample sent to the first audible sample
of the reply); each session ends its interview (POST /end) right after its last reply and polls
/results until the report is ready. Then single interviews of one answer, alternating the same
way, each ended as the interviewer's reply begins (the answer stored, its pass just begun): the
delay of the report after one interview, at its worst. The accurate pass's `accurate_pass` log
lines give its time per answer second, and /proc the CPU its process used.

Targets (issue 14): voice-to-voice p95 with 8 sessions at most 5 % above the pass off; the
report ready at most 10 s after the end of an interview with one session. Numbers are reported,
never asserted: the machine may be shared. Writes benchmarks/results/accurate_pass.json and the
table in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.tables import fmt, row
from benchmarks.voice_bench import (
    ANSWERS_PER_SESSION,
    PLAN,
    STAGES,
    STAGGER_SECONDS,
    Audio,
    Session,
    answer_audio,
    code_version,
    converse,
    cpu_seconds,
    machine,
    median,
    open_session,
    pct,
    publish,
    wait_disconnected,
)
from harness.app_server import AppServer, log_events

HERE = Path(__file__).resolve().parent
RESULTS_PATH = HERE / "results" / "accurate_pass.json"
BEGIN_MARK, END_MARK = "<!-- accurate-pass:begin -->", "<!-- accurate-pass:end -->"

ON, OFF, STORED = "on", "off", "stored"
MODE_ENV = {
    ON: {},
    OFF: {"ACCURATE_STT_MODEL": "off"},
    # A diagnostic (`--modes on,off,stored`): each answer's audio is kept as with the pass on,
    # but this instance runs no pass (its reports stay pending, and are not waited for).
    STORED: {"ACCURATE_PASS_WORKERS": "0"},
}
MODE_NAMES = {
    ON: "accurate pass on",
    OFF: "off (ACCURATE_STT_MODEL=off)",
    STORED: "audio kept, no pass (ACCURATE_PASS_WORKERS=0)",
}
SESSIONS = 8
TARGETS = {"v2v_p95_rise_pct": 5.0, "report_ready_1_s": 10.0}
READY_POLL_SECONDS = 0.1  # how often a session asks /results: the report's delay is this exact
READY_LIMIT_SECONDS = 300.0


def bench_server(workdir: Path, mode: str, sessions: int) -> AppServer:
    return AppServer(
        workdir / f"server-{mode}.log",
        {
            "DATABASE_URL": f"sqlite:///{workdir}/bench-{mode}.db",
            # One for both, empty: the warm-up interview fills it with the plan's lines (the
            # cache writes each file whole, and a server looks on disk for what it lacks).
            "SPEECH_CACHE_DIR": str(workdir / "speech-cache"),
            "VOICE_ENABLED": "true",
            "EVENTS_STREAM_SECONDS": "3600",  # one event stream per session for the whole round
            "MAX_CONCURRENT_INTERVIEWS": str(max(SESSIONS, sessions)),
            "LOG_LEVEL": "INFO",
            **MODE_ENV[mode],
        },
    )


# -- /proc: the accurate pass's process ------------------------------------------------------


def idle_children(pid: int) -> list[int]:
    """The server's children at SCHED_IDLE: the accurate pass's processes."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(p) for p in (task / "children").read_text().split()]
    idle = []
    for child in found:
        with contextlib.suppress(OSError):
            if os.sched_getscheduler(child) == os.SCHED_IDLE:
                idle.append(child)
    return idle


def children_cpu(pid: int) -> dict[int, float]:
    found = {}
    for child in idle_children(pid):
        with contextlib.suppress(OSError):
            found[child] = cpu_seconds(child)
    return found


# -- a round ---------------------------------------------------------------------------------


async def close(session: Session) -> None:
    await session.client.close()
    if session.follower is not None:
        session.follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await session.follower


async def end_and_wait_for_report(api: str, session: Session, wait: bool) -> dict[str, Any]:
    """POST /end, then (`wait`) /results every READY_POLL_SECONDS until 200: the seconds in
    between."""
    headers = {"Authorization": f"Bearer {session.token}"}
    async with httpx.AsyncClient(timeout=30.0, trust_env=False) as http:
        response = await http.post(f"{api}/{session.id}/end", headers=headers)
        response.raise_for_status()
        ended, ended_wall = time.monotonic(), time.time()
        await close(session)
        while wait and time.monotonic() - ended < READY_LIMIT_SECONDS:
            results = await http.get(f"{api}/{session.id}/results", headers=headers)
            if results.status_code == 200:
                ready = time.monotonic()
                return {"ended_at": ended_wall, "ready_s": round(ready - ended, 2), "ready": ready}
            await asyncio.sleep(READY_POLL_SECONDS)
    return {"ended_at": ended_wall, "ready_s": None, "ready": None}


async def run_round(
    server: AppServer, mode: str, count: int, answers: list[Audio], label: str, hang_up: bool
) -> dict[str, Any]:
    """`count` sessions answer three questions each and end their interview after the last
    reply; or, with `hang_up`, answer one and end it as the reply to it begins (the answer is
    stored; its accurate pass has just begun). Each waits for its report."""
    assert server.process is not None
    pid = server.process.pid
    kind = "one answer, hang up" if hang_up else f"{ANSWERS_PER_SESSION} answers"
    print(f">> {label}: {MODE_NAMES[mode]}, {count} session(s), {kind}", flush=True)
    sessions = list(
        await asyncio.gather(
            *(open_session(server.api, f"accurate-{mode}-{count}-{i}") for i in range(count))
        )
    )
    try:
        await asyncio.gather(*(s.hear_line(1, after=None) for s in sessions))
        server_cpu, pass_cpu, began = cpu_seconds(pid), children_cpu(pid), time.monotonic()

        async def interview(index: int, session: Session) -> dict[str, Any]:
            spoken = [answers[(index + k) % len(answers)] for k in range(ANSWERS_PER_SESSION)]
            said_at = None
            if hang_up:
                said = await session.client.say(spoken[0], trailing_silence=1.0)
                said_at = said.speech_ended_at
                # The reply to the whole answer has begun: the answer is stored (an answer the
                # server took for finished at a pause, and replied to, went on after it).
                await session.client.wait_for_speech(60, after=said_at)
            else:
                await converse(session, spoken, index * STAGGER_SECONDS)
            try:
                ended = await end_and_wait_for_report(server.api, session, mode != STORED)
            except httpx.HTTPError as exc:
                session.errors.append(f"end: {exc!r}")
                return {"ended_at": None, "ready_s": None, "after_speech_s": None}
            after_speech = None
            if said_at is not None and ended["ready"] is not None:
                after_speech = round(ended["ready"] - said_at, 2)
            return {**ended, "after_speech_s": after_speech}

        ended = await asyncio.gather(*(interview(i, s) for i, s in enumerate(sessions)))
        wall = time.monotonic() - began
        after = children_cpu(pid)
        # A child restarted meanwhile (a pass timed out) counts from zero.
        pass_seconds = sum(t - pass_cpu.get(p, 0.0) for p, t in after.items())
        cpu = {
            "seconds": round(wall, 1),
            "server_pct": round((cpu_seconds(pid) - server_cpu) / wall * 100, 1),
            "accurate_pass_cpu_s": round(pass_seconds, 1) if after else None,
        }
    finally:
        for session in sessions:
            with contextlib.suppress(Exception):
                await close(session)
        await wait_disconnected(server.api)
    return {
        "label": label,
        "mode": mode,
        "sessions": count,
        "hang_up": hang_up,
        "session_ids": [s.id for s in sessions],
        "v2v_ms": [round(x * 1000) for s in sessions for x in s.latencies],
        "report_ready_s": [e["ready_s"] for e in ended],
        # With `hang_up`: from the last speech sample of the answer to the report ready.
        "ready_after_speech_s": [e["after_speech_s"] for e in ended],
        "ended_at": [e["ended_at"] for e in ended],
        "errors": [e for s in sessions for e in s.errors],
        "cpu": cpu,
    }


# -- results ---------------------------------------------------------------------------------


def at(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    known = [v for v in values if v is not None]
    return {
        "n": len(known),
        "missing": len(values) - len(known),
        "p50": median(known),
        "p95": pct(known, 95),
        "max": max(known) if known else None,
    }


def add_server_side(rounds: list[dict[str, Any]], logs: dict[str, str]) -> None:
    """Each round's reply stages (`reply_timing`) and, with the pass on, its passes."""
    for rnd in rounds:
        log = logs[rnd["mode"]]
        ids = set(rnd["session_ids"])
        timings = [t for t in log_events(log, "reply_timing") if t.get("session_id") in ids]
        rnd["stage_medians_ms"] = {
            k: median([t[k] for t in timings if t.get(k) is not None])
            for k in (*STAGES, "total_ms")
        }
        passes = [p for p in log_events(log, "accurate_pass") if p.get("session_id") in ids]
        if rnd["mode"] != ON:
            continue
        done = [p for p in passes if p["outcome"] == "done" and p["audio_seconds"]]
        last_pass: dict[str, float] = {}
        for p in passes:
            last_pass[p["session_id"]] = max(last_pass.get(p["session_id"], 0.0), at(p["ended"]))
        rnd["passes"] = {
            "n": len(passes),
            "outcomes": sorted({p["outcome"] for p in passes}),
            "seconds": spread([p["seconds"] for p in done]),
            "seconds_per_answer_second": spread(
                [round(p["seconds"] / p["audio_seconds"], 3) for p in done]
            ),
            # How long after the end of its interview the session's last pass finished
            # (negative: before the end).
            "last_pass_after_end_s": spread(
                [
                    round(last_pass[sid] - ended, 2)
                    for sid, ended in zip(rnd["session_ids"], rnd["ended_at"], strict=True)
                    if sid in last_pass and ended is not None
                ]
            ),
        }


def summarize(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per server and session count, the measured rounds pooled."""
    out = []
    for count in sorted({r["sessions"] for r in rounds}, reverse=True):
        for mode in MODE_ENV:
            mine = [r for r in rounds if r["mode"] == mode and r["sessions"] == count]
            if not mine:
                continue
            stt = [r["stage_medians_ms"]["stt_ms"] for r in mine]
            passes = [r["passes"] for r in mine if "passes" in r]
            out.append(
                {
                    "mode": mode,
                    "sessions": count,
                    "rounds": len(mine),
                    "v2v_ms": spread([v for r in mine for v in r["v2v_ms"]]),
                    "v2v_p95_per_round_ms": [pct(r["v2v_ms"], 95) for r in mine],
                    "hang_up": mine[0]["hang_up"],
                    "report_ready_s": spread([v for r in mine for v in r["report_ready_s"]]),
                    "ready_after_speech_s": spread(
                        [v for r in mine for v in r["ready_after_speech_s"] if r["hang_up"]]
                    ),
                    "stt_median_ms": median([s for s in stt if s is not None]),
                    "errors": sum(len(r["errors"]) for r in mine),
                    "pass_seconds_per_answer_second_p50": median(
                        [
                            p["seconds_per_answer_second"]["p50"]
                            for p in passes
                            if p["seconds_per_answer_second"]["p50"] is not None
                        ]
                    ),
                    "passes": sum(p["n"] for p in passes),
                    "accurate_pass_cpu_s": sum(r["cpu"]["accurate_pass_cpu_s"] or 0 for r in mine)
                    if mode == ON
                    else None,
                    "last_pass_after_end_p50_per_round_s": [
                        p["last_pass_after_end_s"]["p50"] for p in passes
                    ],
                }
            )
    return out


def targets(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by = {(s["mode"], s["sessions"]): s for s in summary}
    rows: list[dict[str, Any]] = []
    many = max(s["sessions"] for s in summary)
    on8, off8 = by.get((ON, many)), by.get((OFF, many))
    if on8 and off8 and on8["v2v_ms"]["p95"] and off8["v2v_ms"]["p95"]:
        rise = round((on8["v2v_ms"]["p95"] / off8["v2v_ms"]["p95"] - 1) * 100, 1)
        rows.append(
            {
                "target": f"Voice-to-voice p95, {many} sessions: the pass on against off",
                "value": rise,
                "limit": TARGETS["v2v_p95_rise_pct"],
                "unit": "%",
                "holds": rise <= TARGETS["v2v_p95_rise_pct"],
                "note": f"on {fmt(on8['v2v_ms']['p95'])} ms (n={on8['v2v_ms']['n']}), off "
                f"{fmt(off8['v2v_ms']['p95'])} ms (n={off8['v2v_ms']['n']})",
            }
        )
    on1 = by.get((ON, 1))
    if on1 and on1["report_ready_s"]["n"]:
        ready = on1["report_ready_s"]
        rows.append(
            {
                "target": "Report ready after the end, 1 session, ended as the reply to its "
                "answer began (p95)",
                "value": ready["p95"],
                "limit": TARGETS["report_ready_1_s"],
                "unit": "s",
                "holds": ready["p95"] <= TARGETS["report_ready_1_s"] and not ready["missing"],
                "note": f"median {fmt(ready['p50'])} s, max {fmt(ready['max'])} s, "
                f"n={ready['n']}"
                + (f", {ready['missing']} never ready" if ready["missing"] else ""),
            }
        )
    return rows


def markdown(result: dict[str, Any]) -> str:
    m, code, config = result["machine"], result["code"], result["config"]
    dirty = code.get("uncommitted")
    lines = [
        f"Last run {m['date']} on commit {code.get('commit', '?')[:10]}"
        + (f" with uncommitted changes to {', '.join(dirty)}" if dirty else "")
        + f": {m['nproc']} x {m['cpu_model']}, Python {m['python']}, load average at start "
        f"{' '.join(m['loadavg_at_start'])}; the benchmark took {result['runtime_seconds']:.0f} s. "
        f"On each server, alternating: {config['rounds']} rounds of {config['sessions']} "
        f"sessions answering {config['answers_per_session']} questions, then "
        f"{config['single_rounds']} single interviews of one answer.",
        "",
        "| Target | Measured | Limit | Holds | Note |",
        "|---|---|---|---|---|",
    ]
    for t in result["targets"]:
        holds = {True: "yes", False: "**no**"}[t["holds"]]
        lines.append(
            row(t["target"], f"{fmt(t['value'])} {t['unit']}", f"{fmt(t['limit'])} {t['unit']}",
                holds, t["note"])
        )  # fmt: skip
    talking = [s for s in result["summary"] if not s["hang_up"]]
    lines += [
        "",
        "Voice-to-voice (ms), the replies of every round pooled:",
        "",
        "| Server | Sessions | Replies | p50 | p95 | max | p95 of each round | STT median "
        "| Errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in talking:
        v = s["v2v_ms"]
        lines.append(
            row(MODE_NAMES[s["mode"]], s["sessions"], v["n"], v["p50"], v["p95"], v["max"],
                ", ".join(fmt(x) for x in s["v2v_p95_per_round_ms"]), s["stt_median_ms"],
                s["errors"])
        )  # fmt: skip
    lines += [
        "",
        "The report after the end of the interview (s): POST /end answered -> /results 200 "
        f"(polled every {READY_POLL_SECONDS:g} s); for the interviews of one answer, ended as "
        "the reply to it began, also from the answer's last word.",
        "",
        "| Server | Sessions | The interview ended | Reports | p50 | p95 | max "
        "| From the last word p50 | p95 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in result["summary"]:
        if s["mode"] == STORED:
            continue  # its reports wait for a pass that instance never runs
        r, w = s["report_ready_s"], s["ready_after_speech_s"]
        how = "as the reply to its answer began" if s["hang_up"] else "after the last reply"
        lines.append(
            row(MODE_NAMES[s["mode"]], s["sessions"], how,
                f"{r['n']}" + (f" ({r['missing']} never)" if r["missing"] else ""),
                r["p50"], r["p95"], r["max"], w["p50"], w["p95"])
        )  # fmt: skip
    lines += ["", "The accurate pass on its server (`accurate_pass` log lines, /proc):", ""]
    for s in result["summary"]:
        if s["mode"] == ON:
            after = ", ".join(fmt(a) for a in s["last_pass_after_end_p50_per_round_s"])
            lines.append(
                f"- {s['sessions']} session(s): {s['passes']} passes, median "
                f"{fmt(s['pass_seconds_per_answer_second_p50'])} s per answer second; its "
                f"process used {fmt(s['accurate_pass_cpu_s'])} s of CPU over the rounds; an "
                f"interview's last pass ended {after} s after the interview (median per round; "
                "negative: before it)."
            )
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------


async def bench(
    modes: list[str], rounds: int, single_rounds: int, sessions: int, workdir: Path
) -> dict[str, Any]:
    started = time.monotonic()
    host, code = machine(), code_version()  # before anything else runs or changes
    answers = answer_audio()
    servers = {mode: bench_server(workdir, mode, sessions) for mode in modes}
    print(">> starting both servers (the speech models load first)", flush=True)
    await asyncio.gather(*(asyncio.to_thread(s.start, 180) for s in servers.values()))
    measured: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(2)
        # A first interview fills the speech cache with the plan's lines (not counted): on the
        # server without the pass, so nothing is queued for it on the other.
        first = OFF if OFF in servers else modes[-1]
        await run_round(servers[first], first, 1, answers, "warm-up", hang_up=False)
        for count, times, hang_up in ((sessions, rounds, False), (1, single_rounds, True)):
            for number in range(times):
                # on, off, then off, on: each server first as often as last.
                for mode in modes if number % 2 == 0 else modes[::-1]:
                    if hang_up and mode == STORED:
                        continue  # its report never comes
                    label = f"round {number + 1}/{times}"
                    measured.append(
                        await run_round(servers[mode], mode, count, answers, label, hang_up)
                    )
    finally:
        for server in servers.values():
            server.stop()
    add_server_side(measured, {mode: s.log() for mode, s in servers.items()})
    summary = summarize(measured)
    return {
        "machine": host,
        "code": code,
        "config": {
            "plan": PLAN,
            "modes": {mode: MODE_ENV[mode] for mode in modes},
            "sessions": sessions,
            "rounds": rounds,
            "single_rounds": single_rounds,
            "answers_per_session": ANSWERS_PER_SESSION,
            "stagger_seconds": STAGGER_SECONDS,
            "ready_poll_seconds": READY_POLL_SECONDS,
            "answer_seconds": [round(a.size / 48_000, 2) for a in answers],
        },
        "rounds": measured,
        "summary": summary,
        "targets": targets(summary),
        "runtime_seconds": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--modes", default=f"{ON},{OFF}", help=f"of {', '.join(MODE_ENV)}")
    parser.add_argument("--sessions", type=int, default=SESSIONS, help="sessions of a round")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of --sessions, each")
    parser.add_argument("--single-rounds", type=int, default=2, help="1-session rounds each")
    parser.add_argument("--no-write", action="store_true", help="print, do not write results")
    parser.add_argument("--workdir", type=Path, help="keep the databases and server logs here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spool-bench-accurate-") as temp:
        workdir = args.workdir or Path(temp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            modes = [m for m in args.modes.split(",") if m in MODE_ENV]
            result = asyncio.run(
                bench(modes, args.rounds, args.single_rounds, args.sessions, workdir)
            )
        except BaseException:
            for log in sorted(workdir.glob("server-*.log")):
                print(f"{log.name} (tail):\n" + "\n".join(log.read_text().splitlines()[-40:]))
            raise
    table = markdown(result)
    print(table)
    output = json.dumps(result, indent=2) + "\n"
    if args.workdir:
        (workdir / "accurate_pass.json").write_text(output)
    if not args.no_write:
        publish(RESULTS_PATH, output, table, BEGIN_MARK, END_MARK)


if __name__ == "__main__":
    main()
