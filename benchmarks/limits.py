"""What the abuse limits cost and what they stop (`make bench`), on one PostgreSQL.

Two servers on one database, one with the rate limits off (the baseline) and one with them on
(counted in PostgreSQL, a limit so high it only counts): `POST /start` is timed on each in
turn, request by request, so both see the same machine at the same moment. Then a server with
the default limits is flooded with `/start` from one client for FLOOD_SECONDS while another
client (another address in X-Forwarded-For, behind a trusted proxy hop) starts one interview;
and a request whose body stalls is timed to its 408.

Writes benchmarks/results/limits.json and the table in benchmarks/README.md.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.tables import row
from benchmarks.voice_bench import publish
from harness.app_server import AppServer
from harness.postgres import PostgresServer

HERE = Path(__file__).resolve().parent
RESULTS_PATH = HERE / "results" / "limits.json"
BEGIN_MARK, END_MARK = "<!-- limits:begin -->", "<!-- limits:end -->"

TIMED_STARTS = 300  # per server, alternating
WARMUP_STARTS = 20
FLOOD_SECONDS = 10.0
FLOOD_CONCURRENCY = 4
BODY_TIMEOUT_SECONDS = 10.0  # the default REQUEST_BODY_TIMEOUT_SECONDS


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def timed_starts(off: AppServer, on: AppServer) -> dict[str, dict[str, float]]:
    """`/start` latency on each server, alternating request by request."""
    times: dict[str, list[float]] = {"off": [], "on": []}
    with httpx.Client(timeout=30) as client:
        for i in range(WARMUP_STARTS + TIMED_STARTS):
            for name, server in (("off", off), ("on", on)) if i % 2 else (("on", on), ("off", off)):
                began = time.perf_counter()
                response = client.post(f"{server.api}/start", json={"user_id": f"bench-{i}"})
                elapsed = (time.perf_counter() - began) * 1000
                assert response.status_code == 201, response.text
                if i >= WARMUP_STARTS:
                    times[name].append(elapsed)
    return {
        name: {"median_ms": statistics.median(t), "p95_ms": percentile(t, 0.95)}
        for name, t in times.items()
    }


async def flood(server: AppServer) -> dict[str, Any]:
    """One client floods /start; another starts one interview in the middle of it."""
    counts: dict[int, int] = {}
    deadline = time.monotonic() + FLOOD_SECONDS
    flooder = {"X-Forwarded-For": "198.51.100.7"}

    async def one_worker(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            response = await client.post("/start", json={"user_id": "flood"}, headers=flooder)
            counts[response.status_code] = counts.get(response.status_code, 0) + 1

    async with httpx.AsyncClient(base_url=server.api, timeout=30) as client:
        workers = [asyncio.create_task(one_worker(client)) for _ in range(FLOOD_CONCURRENCY)]
        await asyncio.sleep(FLOOD_SECONDS / 2)
        other = await client.post(
            "/start", json={"user_id": "other"}, headers={"X-Forwarded-For": "203.0.113.9"}
        )
        await asyncio.gather(*workers)
    return {
        "seconds": FLOOD_SECONDS,
        "created": counts.get(201, 0),
        "refused_429": counts.get(429, 0),
        "other_statuses": {str(k): v for k, v in counts.items() if k not in (201, 429)},
        "other_client_status": other.status_code,
    }


def stalled_body(server: AppServer) -> dict[str, Any]:
    """Headers promising a body, then nothing: seconds until the server answers, and how."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(
            b"POST /api/interview/start HTTP/1.1\r\nHost: bench\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        began = time.monotonic()
        answer = sock.recv(4096)
        seconds = time.monotonic() - began
    status_line = answer.split(b"\r\n", 1)[0].decode("latin-1")
    return {"status": int(status_line.split()[1]), "seconds": round(seconds, 2)}


def table(result: dict[str, Any]) -> str:
    starts, flooded, stall = result["starts"], result["flood"], result["stalled_body"]
    lines = [
        f"`POST /start` on PostgreSQL, {TIMED_STARTS} per server, alternating:",
        "",
        "| Rate limits | median ms | p95 ms |",
        "|---|---|---|",
        row("off (baseline)", starts["off"]["median_ms"], starts["off"]["p95_ms"]),
        row("on (counted in PostgreSQL)", starts["on"]["median_ms"], starts["on"]["p95_ms"]),
        "",
        f"Flood of `/start` from one client, {FLOOD_CONCURRENCY} at a time for "
        f"{flooded['seconds']:.0f} s, default limit (20/minute): {flooded['created']} created, "
        f"{flooded['refused_429']} refused with 429; another client meanwhile: "
        f"{flooded['other_client_status']}. A body that stalls: {stall['status']} after "
        f"{stall['seconds']} s.",
    ]
    return "\n".join(lines)


def main() -> None:
    postgres = PostgresServer()
    postgres.start()
    servers: list[AppServer] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-limits-") as tmp:
            workdir = Path(tmp)
            database = postgres.create_database()

            def server(name: str, env: dict[str, str]) -> AppServer:
                started = AppServer(workdir / f"{name}.log", {"DATABASE_URL": database, **env})
                started.start(timeout=60)
                servers.append(started)
                return started

            off = server("off", {"RATE_LIMIT_ENABLED": "false"})
            on = server("on", {"RATE_LIMIT_START": "1000000/minute"})
            starts = timed_starts(off, on)
            limited = server(
                "limited",
                {
                    "RATE_LIMIT_START": "20/minute",
                    "TRUSTED_PROXY_HOPS": "1",
                    "REQUEST_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_SECONDS),
                },
            )
            result = {
                "starts": starts,
                "flood": asyncio.run(flood(limited)),
                "stalled_body": stalled_body(limited),
            }
    finally:
        for started in servers:
            started.stop()
        postgres.stop()
    print(json.dumps(result, indent=2))
    publish(RESULTS_PATH, json.dumps(result, indent=2) + "\n", table(result), BEGIN_MARK, END_MARK)


if __name__ == "__main__":
    main()
