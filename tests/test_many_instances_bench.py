"""The multi-instance benchmark's bookkeeping (benchmarks/many_instances.py): routes, the
summary of a round and its README table, on made-up numbers (the run itself is `make bench`)."""

from __future__ import annotations

from collections import Counter

from benchmarks.many_instances import (
    TextStats,
    VoiceResult,
    markdown,
    route_of,
    summarize_round,
)


def test_routes_name_the_session_as_id():
    assert route_of("POST", "/api/interview/start") == "POST /start"
    assert route_of("POST", "/api/interview/Ab_c-9/transcript") == "POST /{id}/transcript"
    assert route_of("GET", "/api/interview/x1/events") == "GET /{id}/events"


def a_round(instances: int) -> dict:
    stats = TextStats(started=10.0, stopped=20.0)
    answers = "POST /{id}/transcript"
    stats.latencies_ms = {answers: [10.0, 30.0, 50.0, 70.0], "POST /start": [5.0]}
    stats.outcomes_by_route = {
        answers: Counter({"200": 2, "503": 1, "ConnectError": 1}),
        "POST /start": Counter({"201": 1}),
    }
    stats.outcomes = sum(stats.outcomes_by_route.values(), Counter())
    stats.served_by.update({"node-1": 3, "node-2": 2} if instances == 2 else {"node-1": 5})
    stats.interviews = 1
    voice = [VoiceResult([0.8, 1.2], [], "node-1"), VoiceResult([1.0], ["answer 2: timeout"])]
    return summarize_round(instances, stats.as_json(), voice, VoiceResult(), {"node-1": 50.0})


def test_a_round_counts_requests_errors_and_voice_latency():
    summary = a_round(2)
    text, voice = summary["text"], summary["voice"]
    assert (text["requests"], text["seconds"], text["requests_per_second"]) == (5, 10.0, 0.5)
    assert text["errors"] == {"503": 1, "ConnectError": 1}  # 2xx are not errors
    assert text["routes"]["POST /{id}/transcript"]["p50_ms"] == 40.0
    assert text["routes"]["POST /{id}/transcript"]["outcomes"]["503"] == 1
    assert voice["v2v_ms"] == [800, 1200, 1000] and voice["p50_ms"] == 1000.0
    assert voice["owners"] == {"node-1": 1, "?": 1}
    assert voice["errors"] == ["answer 2: timeout"]


def test_the_table_puts_the_rounds_side_by_side():
    result = {
        "machine": {
            "date": "2026-12-06T12:00:00+00:00",
            "nproc": 2,
            "cpu_model": "CPU",
            "python": "3.11.7",
            "loadavg_at_start": ["1.0", "1.0", "1.0"],
        },
        "code": {"commit": "0123456789abcdef", "uncommitted": []},
        "config": {"text_clients": 200, "think_seconds": 1.0, "events": True, "voice_sessions": 4},
        "rounds": [a_round(1), {**a_round(2), "proxy": {"abnormal_terminations": {"SD-- 200": 2}}}],
        "runtime_seconds": 300.0,
    }
    table = markdown(result)
    assert "| 1 | 0.5 | 5 | 1 | 503: 1, ConnectError: 1 | 1000 ms |" in table
    assert "| POST /{id}/transcript | 40.0 / 67.0 (4) | 40.0 / 67.0 (4) |" in table
    assert "2 instance(s): node-1 3, node-2 2" in table
    assert (
        "not end normally (HAProxy's termination state and status): 2 instance(s): SD-- 200 x2"
        in table
    )
