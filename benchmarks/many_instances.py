"""Several instances on one PostgreSQL behind a round-robin proxy, under load (issue 12's round).

    make bench      # or: .venv/bin/python -m benchmarks.many_instances [--clients 200 --voice 4]

Two rounds, one after the other on the same machine and the same PostgreSQL server: the service
on one instance behind HAProxy, then on two (harness/cluster.py: real `python app.py` processes,
Debian's HAProxy with `balance roundrobin` and no stickiness). In each round, 200 text clients
(a separate process, so their work does not delay the voice clients' audio) run interviews
through the proxy as the web client does: POST /start, an /events stream open (SSE, resumed with
Last-Event-ID), GET /status and an answer (with an Idempotency-Key, retried on 502/503/202 with
the same key) after `--think` seconds each, five answers to the end of the plan or two and
POST /end, then /results until ready and the transcript; then a new interview. Meanwhile 4 voice
sessions (aiortc peers, Kokoro answers as in benchmarks/voice_bench.py) answer three questions
each, timed from the last speech sample sent to the first audible sample of the reply. Before the
load, one voice interview alone warms the instances and the speech cache (not counted).

Reported per round: requests per second, p50/p95 per route, errors by status, requests per
instance, the instances' CPU, and voice-to-voice p50/p95 next to the other round's. Written to
benchmarks/results/many_instances.json and the table in benchmarks/README.md. Numbers are
reported, never asserted: the machine may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any

import httpx

from benchmarks.tables import fmt, row
from benchmarks.voice_bench import (
    ANSWERS_PER_SESSION,
    NPROC,
    PLAN,
    Audio,
    answer_audio,
    code_version,
    cpu_seconds,
    machine,
    machine_ticks,
    pct,
    publish,
)
from harness.app_server import GENEROUS_LIMITS
from harness.cluster import Cluster, postgres_for
from harness.haproxy import SERVED_BY
from harness.postgres import PostgresServer
from harness.sse import read_events
from harness.voice_client import VoiceClient, VoiceClientError, start_session

HERE = Path(__file__).resolve().parent
RESULTS_PATH = HERE / "results" / "many_instances.json"
BEGIN_MARK, END_MARK = "<!-- many-instances:begin -->", "<!-- many-instances:end -->"

TEXT_CLIENTS = 200
VOICE_SESSIONS = 4
THINK_SECONDS = 1.0  # between a text client's requests: a person reads, then types
MIN_LOAD_SECONDS = 30.0  # the text load runs at least this long, and until the voice is done
ROUNDS = (1, 2)  # instances per round
STAGGER_SECONDS = 1.0  # between the voice sessions' starts
REPLY_SILENCE = 2.0  # the interviewer's line is over after this much silence (busy cores)
TEXT_ANSWERS = (
    "I split the billing code out of the monolith into a service with its own database.",
    "I found the cause in the slow query log and added the index that the report needed.",
    "I would keep orders in PostgreSQL because they need transactions and ad hoc reports.",
    "We shard the sessions by customer and keep a read replica for the analytics jobs.",
    "I disagreed with the design at first, so we wrote down both options and measured them.",
)
PLAN_ANSWERS = len(TEXT_ANSWERS)  # backend-engineer-screen, the default plan: five questions
SERVICE_ENV = {
    "VOICE_ENABLED": "true",
    "MAX_CONCURRENT_INTERVIEWS": "8",
    "LOG_LEVEL": "WARNING",  # 200 clients: one log line per request would cost real CPU
    "INSTANCE_HEARTBEAT_SECONDS": "2",
    "INSTANCE_DEAD_AFTER_SECONDS": "10",
    # The 200 clients all come from 127.0.0.1, one client to the rate limits: they measure the
    # service, not its limits (the harness's default, written here so the results record it).
    **GENEROUS_LIMITS,
}
SESSION_ID = re.compile(r"^/api/interview/[A-Za-z0-9_-]{1,64}/")


def route_of(method: str, path: str) -> str:
    """`POST /{id}/transcript` for `POST /api/interview/<session id>/transcript`."""
    if path.startswith("/api/interview/start"):
        return f"{method} /start"
    return f"{method} " + SESSION_ID.sub("/{id}/", path).removeprefix("/api/interview")


# -- text clients (in their own process) -------------------------------------------------------


@dataclass
class TextStats:
    """What the text clients saw: each request's route, outcome and time."""

    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)  # "200", "503", "ConnectError"
    outcomes_by_route: dict[str, Counter[str]] = field(default_factory=dict)
    served_by: Counter[str] = field(default_factory=Counter)
    interviews: int = 0
    started: float = 0.0
    stopped: float = 0.0

    async def call(
        self, http: httpx.AsyncClient, method: str, path: str, **kwargs: Any
    ) -> httpx.Response | None:
        started = time.perf_counter()
        response: httpx.Response | None = None
        try:
            response = await http.request(method, path, **kwargs)
            outcome = str(response.status_code)
            self.served_by[response.headers.get(SERVED_BY, "proxy")] += 1
        except httpx.TransportError as exc:
            outcome = type(exc).__name__
        self.record(route_of(method, f"/api/interview{path}"), outcome, started)
        return response

    def record(self, route: str, outcome: str, started: float) -> None:
        elapsed = (time.perf_counter() - started) * 1000
        self.latencies_ms.setdefault(route, []).append(round(elapsed, 2))
        self.outcomes[outcome] += 1
        self.outcomes_by_route.setdefault(route, Counter())[outcome] += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "latencies_ms": self.latencies_ms,
            "outcomes": dict(self.outcomes),
            "outcomes_by_route": {k: dict(v) for k, v in self.outcomes_by_route.items()},
            "served_by": dict(self.served_by),
            "interviews": self.interviews,
            "seconds": round(self.stopped - self.started, 2),
        }


async def follow_events(
    http: httpx.AsyncClient, sid: str, headers: dict[str, str], stats: TextStats
) -> None:
    """An /events stream as the web client keeps one: resumed with Last-Event-ID whenever the
    server ends a response, until the results event. Its time to the response's headers counts
    as the route's latency."""
    last: str | None = None
    while True:
        sent = {**headers, "Last-Event-ID": last} if last else headers
        started = time.perf_counter()
        try:
            async with http.stream("GET", f"/{sid}/events", headers=sent) as response:
                stats.record("GET /{id}/events", str(response.status_code), started)
                if response.status_code != 200:
                    await asyncio.sleep(1.0)
                    continue
                async for event in read_events(response):
                    last = event.id or last
                    if event.event == "results":
                        return
        except httpx.TransportError as exc:
            stats.record("GET /{id}/events", type(exc).__name__, started)
            await asyncio.sleep(1.0)


async def answer(
    stats: TextStats, http: httpx.AsyncClient, sid: str, headers: dict[str, str], text: str
) -> httpx.Response | None:
    """One answer, retried with the same Idempotency-Key as the web client does."""
    sent = {**headers, "Idempotency-Key": str(uuid.uuid4())}
    for _ in range(5):
        response = await stats.call(
            http, "POST", f"/{sid}/transcript", json={"text": text}, headers=sent
        )
        if response is not None and response.status_code not in (202, 502, 503):
            return response
        await asyncio.sleep(float(response.headers.get("retry-after", 1)) if response else 1.0)
    return None


async def text_client(
    index: int,
    http: httpx.AsyncClient,
    think: float,
    events: bool,
    stopping: Callable[[], bool],
    stats: TextStats,
) -> None:
    """Interviews, one after the other, until told to stop (the one under way is finished)."""
    await asyncio.sleep(think * index / TEXT_CLIENTS)  # the clients do not start in one burst
    round_ = 0
    while not stopping():
        round_ += 1
        started = await stats.call(http, "POST", "/start", json={"user_id": f"bench-text-{index}"})
        if started is None or started.status_code != 201:
            await asyncio.sleep(think)
            continue
        sid, token = started.json()["session_id"], started.json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        follower = asyncio.create_task(follow_events(http, sid, headers, stats)) if events else None
        try:
            # Half the interviews run to the end of the plan, half end early.
            answers = PLAN_ANSWERS if (index + round_) % 2 else 2
            for text in TEXT_ANSWERS[:answers]:
                await asyncio.sleep(think)
                await stats.call(http, "GET", f"/{sid}/status", headers=headers)
                await asyncio.sleep(think)
                await answer(stats, http, sid, headers, text)
            if answers < PLAN_ANSWERS:
                # Ending twice changes nothing: retried, as a client would, until it is done.
                for _ in range(5):
                    ended = await stats.call(http, "POST", f"/{sid}/end", headers=headers)
                    if ended is not None and ended.status_code < 500:
                        break
                    await asyncio.sleep(1.0)
            for _ in range(20):
                await asyncio.sleep(think / 2)
                report = await stats.call(http, "GET", f"/{sid}/results", headers=headers)
                if report is None or report.status_code != 202:
                    break
            await stats.call(http, "GET", f"/{sid}/transcript", headers=headers)
            stats.interviews += 1
        finally:
            if follower is not None:
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower


async def text_load(
    api: str, clients: int, think: float, events: bool, stop: ProcessEvent
) -> TextStats:
    stats = TextStats(started=time.perf_counter())
    limits = httpx.Limits(max_connections=clients * 2 + 10, max_keepalive_connections=clients * 2)
    timeout = httpx.Timeout(60.0, read=120.0)
    async with httpx.AsyncClient(
        base_url=api, timeout=timeout, limits=limits, trust_env=False
    ) as http:
        await asyncio.gather(
            *(text_client(i, http, think, events, stop.is_set, stats) for i in range(clients))
        )
    stats.stopped = time.perf_counter()
    return stats


def run_text_load(
    api: str, clients: int, think: float, events: bool, stop: ProcessEvent, out: str
) -> None:
    """The text load process: runs until `stop` is set, then writes its TextStats to `out`."""
    stats = asyncio.run(text_load(api, clients, think, events, stop))
    Path(out).write_text(json.dumps(stats.as_json()))


# -- voice sessions (in this process) ----------------------------------------------------------


@dataclass
class VoiceResult:
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: list[str] = field(default_factory=list)
    owner: str | None = None


async def voice_interview(
    api: str, label: str, answers: Sequence[Audio], delay: float = 0.0
) -> VoiceResult:
    """One spoken interview through the proxy: greeting, then each answer and its reply."""
    result = VoiceResult()
    await asyncio.sleep(delay)
    sid, token = await start_session(api, user_id=label, plan_id=PLAN)

    async def offered(response: httpx.Response) -> None:
        if response.request.url.path.endswith("/rtc/offer"):
            result.owner = response.headers.get(SERVED_BY)

    async with httpx.AsyncClient(
        timeout=60.0, trust_env=False, event_hooks={"response": [offered]}
    ) as http:
        try:
            client = await VoiceClient.connect(api, sid, token, http=http, connect_timeout=60)
        except VoiceClientError as exc:
            result.errors.append(f"connect: {exc}")
            return result
        try:
            await client.wait_for_reply(timeout=120, silence=REPLY_SILENCE)
            for audio in answers:
                said = await client.say(audio, trailing_silence=REPLY_SILENCE)
                assert said.speech_ended_at is not None
                reply = await client.wait_for_reply(
                    after=said.speech_ended_at, timeout=120, silence=REPLY_SILENCE
                )
                result.latencies.append(reply.started_at - said.speech_ended_at)
        except (TimeoutError, VoiceClientError) as exc:
            result.errors.append(f"answer {len(result.latencies) + 1}: {exc}")
        finally:
            with contextlib.suppress(httpx.HTTPError):
                await http.post(f"{api}/{sid}/end", headers={"Authorization": f"Bearer {token}"})
            await client.close()
    return result


# -- one round ---------------------------------------------------------------------------------


@dataclass
class Options:
    clients: int = TEXT_CLIENTS
    voice: int = VOICE_SESSIONS
    think: float = THINK_SECONDS
    min_seconds: float = MIN_LOAD_SECONDS
    events: bool = True


async def run_round(
    instances: int,
    workdir: Path,
    postgres: PostgresServer,
    answers: list[Audio],
    options: Options,
) -> dict[str, Any]:
    directory = workdir / f"{instances}-instances"
    env = {**SERVICE_ENV, "SPEECH_CACHE_DIR": str(workdir / "speech-cache")}
    cluster = Cluster(directory, size=instances, env=env, postgres=postgres, start_timeout=300)
    print(f">> {instances} instance(s): starting (the speech models load first)", flush=True)
    await asyncio.to_thread(cluster.start)
    try:
        print(f">> {instances} instance(s): one voice interview alone (warm-up)", flush=True)
        warm_up = await voice_interview(cluster.api, "bench-warm-up", answers[:ANSWERS_PER_SESSION])
        await asyncio.sleep(2)
        context = multiprocessing.get_context("spawn")  # nothing of this process's loop copied
        stop = context.Event()
        out = directory / "text-load.json"
        load = context.Process(
            target=run_text_load,
            args=(cluster.api, options.clients, options.think, options.events, stop, str(out)),
        )
        load.start()
        meter = CpuMeter(cluster, postgres, load.pid).start()
        print(
            f">> {instances} instance(s): {options.clients} text clients and "
            f"{options.voice} voice sessions",
            flush=True,
        )
        await asyncio.sleep(options.think * 2)  # the text clients are all under way
        voice = await asyncio.gather(
            *(
                voice_interview(
                    cluster.api,
                    f"bench-voice-{i}",
                    [answers[(i + k) % len(answers)] for k in range(ANSWERS_PER_SESSION)],
                    delay=i * STAGGER_SECONDS,
                )
                for i in range(options.voice)
            )
        )
        await asyncio.sleep(max(0.0, options.min_seconds - (time.monotonic() - meter.started)))
        cpu = meter.stop()
        stop.set()
        print(f">> {instances} instance(s): the text clients finish their interviews", flush=True)
        await asyncio.to_thread(load.join, 300)
        if load.is_alive():
            load.kill()
            raise RuntimeError("the text load did not stop within 300 s")
        text = json.loads(out.read_text())
    finally:
        await asyncio.to_thread(cluster.stop)
    summary = summarize_round(instances, text, voice, warm_up, cpu)
    summary["proxy"] = proxy_log_summary(cluster)
    return summary


def proxy_log_summary(cluster: Cluster) -> dict[str, Any]:
    """What the proxy's access log says of the round: requests per server (the "<NOSRV>" ones it
    answered itself: no instance was up) and the sessions that did not end normally, by
    HAProxy's termination state (e.g. "SD--": the server closed the connection mid-response)."""
    assert cluster.proxy is not None
    served = cluster.proxy.served()
    return {
        "requests_by_server": dict(Counter(server for server, *_ in served)),
        "abnormal_terminations": dict(
            Counter(
                f"{state} {status}"
                for _server, status, _method, _path, state in served
                if state != "----"
            )
        ),
    }


class CpuMeter:
    """CPU over the load, in % of one core: each instance, PostgreSQL (the postmaster and its
    backends; one that exits meanwhile takes its share along: a floor), HAProxy, the text
    clients' process, this process (the voice clients) and the whole machine (whatever else ran
    on it too)."""

    def __init__(self, cluster: Cluster, postgres: PostgresServer, text_pid: int | None) -> None:
        self.cluster, self.postgres, self.text_pid = cluster, postgres, text_pid
        self.started = 0.0
        self.before: dict[str, dict[int, float]] = {}
        self.ticks = (0, 0)

    def processes(self) -> dict[str, list[int]]:
        found = {
            name: [server.process.pid]
            for name, server in self.cluster.instances.items()
            if server.process is not None
        }
        found["postgresql"] = postgres_pids(self.postgres)
        if self.cluster.proxy is not None and self.cluster.proxy.process is not None:
            found["haproxy"] = [self.cluster.proxy.process.pid]
        if self.text_pid is not None:
            found["text clients"] = [self.text_pid]
        found["voice clients"] = [os.getpid()]
        return found

    def sample(self) -> dict[str, dict[int, float]]:
        samples: dict[str, dict[int, float]] = {}
        for label, pids in self.processes().items():
            samples[label] = {}
            for pid in pids:
                with contextlib.suppress(OSError, ValueError):  # gone meanwhile
                    samples[label][pid] = cpu_seconds(pid)
        return samples

    def start(self) -> CpuMeter:
        self.started, self.before, self.ticks = time.monotonic(), self.sample(), machine_ticks()
        return self

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self.started
        after = self.sample()
        busy, total = machine_ticks()
        used = {
            label: sum(
                seconds - self.before.get(label, {}).get(pid, 0.0) for pid, seconds in now.items()
            )
            for label, now in after.items()
        }
        shares = {label: round(seconds / wall * 100, 1) for label, seconds in used.items()}
        machine = (busy - self.ticks[0]) / max(1, total - self.ticks[1]) * NPROC * 100
        shares["machine"] = round(machine, 1)
        return shares


def postgres_pids(postgres: PostgresServer) -> list[int]:
    """The postmaster (first line of its postmaster.pid) and the processes it started."""
    try:
        postmaster = int((postgres.dir / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            text = stat.read_text()
            if int(text[text.rindex(")") + 2 :].split()[1]) == postmaster:
                children.append(int(stat.parent.name))
    return [postmaster, *children]


def summarize_round(
    instances: int,
    text: dict[str, Any],
    voice: Sequence[VoiceResult],
    warm_up: VoiceResult,
    cpu: dict[str, float],
) -> dict[str, Any]:
    latencies: dict[str, list[float]] = text["latencies_ms"]
    requests = sum(len(v) for v in latencies.values())
    v2v = [round(s * 1000) for r in voice for s in r.latencies]
    errors = {k: v for k, v in text["outcomes"].items() if not k.startswith("2")}
    return {
        "instances": instances,
        "text": {
            "requests": requests,
            "seconds": text["seconds"],
            "requests_per_second": round(requests / text["seconds"], 1)
            if text["seconds"]
            else None,
            "interviews": text["interviews"],
            "routes": {
                route: {
                    "n": len(values),
                    "p50_ms": pct(values, 50),
                    "p95_ms": pct(values, 95),
                    "outcomes": text["outcomes_by_route"].get(route, {}),
                }
                for route, values in sorted(latencies.items())
            },
            "outcomes": text["outcomes"],
            "errors": errors,
            "served_by": text["served_by"],
        },
        "voice": {
            "sessions": len(voice),
            "v2v_ms": v2v,
            "p50_ms": pct(v2v, 50),
            "p95_ms": pct(v2v, 95),
            "owners": dict(Counter(r.owner or "?" for r in voice)),
            "errors": [e for r in voice for e in r.errors],
            "warm_up_errors": warm_up.errors,
        },
        "cpu_pct_of_a_core": cpu,
    }


# -- report ------------------------------------------------------------------------------------


def markdown(result: dict[str, Any]) -> str:
    m, code, rounds, config = result["machine"], result["code"], result["rounds"], result["config"]
    dirty = code.get("uncommitted")
    lines = [
        f"Last run {m['date']} on commit {code.get('commit', '?')[:10]}"
        + (f" with uncommitted changes to {', '.join(dirty)}" if dirty else "")
        + f": {m['nproc']} x {m['cpu_model']}, Python {m['python']}, load average at start "
        f"{' '.join(m['loadavg_at_start'])}; the benchmark took {result['runtime_seconds']:.0f} s. "
        f"{config['text_clients']} text clients ({config['think_seconds']} s between requests"
        + (", each with its /events stream" if config["events"] else "")
        + f") and {config['voice_sessions']} voice sessions through HAProxy (round robin).",
        "",
        "| Instances | Requests/s | Requests | Interviews done | Errors (by status) "
        "| Voice-to-voice p50 | p95 | replies | voice errors "
        "| CPU during the load (% of one core) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rounds:
        text, voice = r["text"], r["voice"]
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(text["errors"].items())) or "none"
        cpu = ", ".join(f"{k} {fmt(v)}" for k, v in r["cpu_pct_of_a_core"].items())
        lines.append(
            row(
                r["instances"],
                text["requests_per_second"],
                text["requests"],
                text["interviews"],
                errors,
                f"{fmt(voice['p50_ms'])} ms",
                f"{fmt(voice['p95_ms'])} ms",
                len(voice["v2v_ms"]),
                len(voice["errors"]),
                cpu,
            )
        )
    routes = sorted({route for r in rounds for route in r["text"]["routes"]})
    header = " | ".join(f"{r['instances']} instance(s) p50 / p95 ms (n)" for r in rounds)
    lines += ["", f"| Route | {header} |", "|---|" + "---|" * len(rounds)]
    for route in routes:
        cells = []
        for r in rounds:
            found = r["text"]["routes"].get(route)
            cells.append(
                f"{fmt(found['p50_ms'])} / {fmt(found['p95_ms'])} ({found['n']})" if found else "-"
            )
        lines.append(row(route.replace("|", "\\|"), *cells))
    lines += [
        "",
        "Requests per instance (the proxy's X-Served-By): "
        + "; ".join(
            f"{r['instances']} instance(s): "
            + ", ".join(f"{k} {v}" for k, v in sorted(r["text"]["served_by"].items()))
            for r in rounds
        )
        + ". Voice sessions per owner: "
        + "; ".join(
            ", ".join(f"{k} {v}" for k, v in sorted(r["voice"]["owners"].items())) for r in rounds
        )
        + ".",
    ]
    if any("proxy" in r for r in rounds):
        lines += [
            "",
            "Proxy sessions that did not end normally (HAProxy's termination state and status): "
            + "; ".join(
                f"{r['instances']} instance(s): "
                + (
                    ", ".join(
                        f"{k} x{v}" for k, v in sorted(r["proxy"]["abnormal_terminations"].items())
                    )
                    or "none"
                )
                for r in rounds
                if "proxy" in r
            )
            + ".",
        ]
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------


async def bench(workdir: Path, rounds: Sequence[int], options: Options) -> dict[str, Any]:
    started = time.monotonic()
    host, code = machine(), code_version()
    answers = answer_audio()
    postgres = postgres_for(max(rounds))
    postgres.start()
    try:
        results = [await run_round(n, workdir, postgres, answers, options) for n in rounds]
    finally:
        postgres.stop()
    return {
        "machine": host,
        "code": code,
        "config": {
            "text_clients": options.clients,
            "voice_sessions": options.voice,
            "think_seconds": options.think,
            "min_load_seconds": options.min_seconds,
            "events": options.events,
            "plan_voice": PLAN,
            "answers_per_voice_session": ANSWERS_PER_SESSION,
            "service_env": SERVICE_ENV,
        },
        "rounds": results,
        "runtime_seconds": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=TEXT_CLIENTS, help="text clients")
    parser.add_argument("--voice", type=int, default=VOICE_SESSIONS, help="voice sessions")
    parser.add_argument("--think", type=float, default=THINK_SECONDS)
    parser.add_argument("--min-seconds", type=float, default=MIN_LOAD_SECONDS)
    parser.add_argument("--no-events", action="store_true", help="text clients without /events")
    parser.add_argument(
        "--rounds", default=",".join(map(str, ROUNDS)), help="instances per round, e.g. 1,2"
    )
    parser.add_argument("--no-write", action="store_true", help="print, do not write results")
    parser.add_argument("--workdir", type=Path, help="keep the logs and the results here")
    args = parser.parse_args()
    options = Options(args.clients, args.voice, args.think, args.min_seconds, not args.no_events)
    rounds = [int(n) for n in args.rounds.split(",")]
    with tempfile.TemporaryDirectory(prefix="spool-bench-many-") as temp:
        workdir = args.workdir or Path(temp)
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            result = asyncio.run(bench(workdir, rounds, options))
        except BaseException:
            for log in sorted(workdir.glob("*-instances/*.log")):
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
                print(f"{log.parent.name}/{log.name} (tail):\n{tail}")
            raise
    table = markdown(result)
    print(table)
    output = json.dumps(result, indent=1) + "\n"
    if args.workdir:
        (workdir / "many_instances.json").write_text(output)
    if not args.no_write:
        publish(RESULTS_PATH, output, table, BEGIN_MARK, END_MARK)


if __name__ == "__main__":
    main()
