"""STT: faster-whisper's 30 s window against LocalWhisper's short window, side by side.

    .venv/bin/python -m benchmarks.stt_window [--split heldout|tune] [--no-write]

The material is the end-of-turn clips (benchmarks/eot_clips.py, audio after the Opus round trip
from benchmarks/.eot-cache, made by benchmarks/eot_audio.py): every finished answer, and both
halves of every thinking answer (cut at its 2.5 s pause), each as the listener sends it at a
pause: the speech and 0.25 s of the silence after it. Each piece is transcribed by both paths
of one LocalWhisper (tiny.en), alternating which goes first; word error rate is against the
clip's known text, latency is per call. Writes benchmarks/results/stt_window.json and the table
in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.eot_audio import RATE, ClipAudio
from benchmarks.eot_clips import Split, clips
from benchmarks.voice_bench import HERE, code_version, machine, publish
from harness.speech_audio import Int16Array
from interview.speech.model_files import ModelPaths, models_dir_from_env
from interview.speech.stt.local_whisper import LocalWhisper
from interview.speech.vad import to_float32

RESULTS_PATH = HERE / "results" / "stt_window.json"
BEGIN_MARK, END_MARK = "<!-- stt-window:begin -->", "<!-- stt-window:end -->"
FRAME = RATE // 50  # 20 ms
SILENT_RMS = 60.0  # int16: the digital silence between parts, after Opus
CUT_PAUSE = 2.5  # the thinking clip whose halves are cut apart
TAIL = 0.25  # silence after the speech, as at the listener's pause (decide_after)
LEAD = 0.1


@dataclass(frozen=True)
class Piece:
    name: str
    kind: str  # "finished", "first half", "second half"
    text: str
    audio: Int16Array


def speech_runs(audio: Int16Array) -> list[tuple[int, int]]:
    """(start, end) samples of the stretches between silences of 0.5 s or more."""
    n = len(audio) // FRAME
    rms = np.sqrt(np.mean(audio[: n * FRAME].astype(np.float64).reshape(n, FRAME) ** 2, axis=1))
    loud = np.flatnonzero(rms >= SILENT_RMS)
    if not len(loud):
        return []
    runs: list[tuple[int, int]] = []
    start = prev = int(loud[0])
    for i in loud[1:]:
        if i - prev > 25:  # 0.5 s of silence ends a run
            runs.append((start * FRAME, (prev + 1) * FRAME))
            start = int(i)
        prev = int(i)
    runs.append((start * FRAME, (prev + 1) * FRAME))
    return runs


def cut(audio: Int16Array, start: int, end: int) -> Int16Array:
    return audio[max(0, start - int(LEAD * RATE)) : end + int(TAIL * RATE)].copy()


def pieces(split: Split) -> list[Piece]:
    clip_audio = ClipAudio()
    result: list[Piece] = []
    for clip in clips(split):
        if clip.kind == "thinking" and clip.pause != CUT_PAUSE:
            continue
        audio = clip_audio.audio(clip)
        runs = speech_runs(audio)
        if clip.kind == "finished":
            result.append(
                Piece(clip.name, "finished", clip.text, cut(audio, runs[0][0], runs[-1][1]))
            )
            continue
        gap = _longest_gap(runs)
        first, second = runs[: gap + 1], runs[gap + 1 :]
        result.append(
            Piece(clip.name, "first half", clip.parts[0], cut(audio, first[0][0], first[-1][1]))
        )
        result.append(
            Piece(clip.name, "second half", clip.parts[1], cut(audio, second[0][0], second[-1][1]))
        )
    return result


def _longest_gap(runs: list[tuple[int, int]]) -> int:
    gaps = [runs[i + 1][0] - runs[i][1] for i in range(len(runs) - 1)]
    return int(np.argmax(gaps))


def normalise(text: str) -> list[str]:
    text = text.lower().replace("\u2019", "'").replace("-", " ")
    return re.findall(r"[a-z0-9']+", text)


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edits, reference words): Levenshtein distance over normalised words."""
    return edits(normalise(reference), normalise(hypothesis))


def edits(ref: list[str], hyp: list[str]) -> tuple[int, int]:
    """(edits, reference words): the Levenshtein distance between two lists of words."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[len(hyp)], len(ref)


def run(split: Split) -> dict[str, Any]:
    started = time.time()
    material = pieces(split)
    stt = LocalWhisper(ModelPaths(models_dir_from_env()).whisper_dir)
    stt.warmup()
    rows: list[dict[str, Any]] = []
    for i, piece in enumerate(material):
        audio = to_float32(piece.audio)
        row: dict[str, Any] = {"piece": piece.name, "kind": piece.kind, "reference": piece.text}
        before = stt.fallbacks
        # transcribe() is the short window with its fallback, as the service calls it.
        paths = [("full", stt.transcribe_full), ("short", stt.transcribe)]
        for name, transcribe in paths if i % 2 == 0 else paths[::-1]:
            t0 = time.perf_counter()
            text = transcribe(audio)
            row[name] = {"text": text, "ms": round(1000 * (time.perf_counter() - t0), 1)}
            row[name]["errors"], row["words"] = word_errors(piece.text, text)
        row["seconds"] = round(len(audio) / RATE, 2)
        row["short"]["fell_back"] = stt.fallbacks > before
        rows.append(row)
    return {
        "machine": machine(),
        "code": code_version(),
        "split": split,
        "seconds": round(time.time() - started),
        "fallbacks": stt.fallbacks,
        "summary": summary(rows),
        "rows": rows,
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kinds = ["finished", "first half", "second half"]
    for kind in [*kinds, "all"]:
        chosen = [r for r in rows if kind in ("all", r["kind"])]
        words = sum(r["words"] for r in chosen)
        out[kind] = {"n": len(chosen), "words": words}
        for path in ("full", "short"):
            ms = [r[path]["ms"] for r in chosen]
            out[kind][path] = {
                "wer": round(sum(r[path]["errors"] for r in chosen) / max(1, words), 4),
                "p50_ms": round(float(np.percentile(ms, 50)), 1),
                "p95_ms": round(float(np.percentile(ms, 95)), 1),
                "mean_ms": round(float(np.mean(ms)), 1),
            }
    return out


def markdown(result: dict[str, Any]) -> str:
    m, code = result["machine"], result.get("code", {})
    lines = [
        f"Last run {m['date']} on commit {code.get('commit', '?')[:10]}: {m['nproc']} x "
        f"{m['cpu_model']}, load average at start {' '.join(m['loadavg_at_start'])}; split "
        f"{result['split'].upper()}; {result['seconds']} s; the short window fell back to the "
        f"30 s pass {result['fallbacks']} times.",
        "",
        "| Pieces | n | words | WER 30 s | WER short | p50 ms 30 s | p50 ms short "
        "| p95 ms 30 s | p95 ms short | mean ms 30 s | mean ms short |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, s in result["summary"].items():
        f, sh = s["full"], s["short"]
        lines.append(
            f"| {kind} | {s['n']} | {s['words']} | {100 * f['wer']:.1f} % | "
            f"{100 * sh['wer']:.1f} % | {f['p50_ms']:.0f} | {sh['p50_ms']:.0f} | "
            f"{f['p95_ms']:.0f} | {sh['p95_ms']:.0f} | {f['mean_ms']:.0f} | {sh['mean_ms']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=("heldout", "tune"), default="heldout")
    parser.add_argument("--no-write", action="store_true", help="print, do not write results")
    parser.add_argument("--show", action="store_true", help="print every piece that differs")
    args = parser.parse_args(None if argv is None else list(argv))
    result = run(args.split)
    if args.show:
        for r in result["rows"]:
            if r["full"]["text"] != r["short"]["text"]:
                print(f"{r['piece']} [{r['kind']}] {r['seconds']} s")
                print(f"   30 s : {r['full']['text']}  ({r['full']['ms']} ms)")
                print(f"   short: {r['short']['text']}  ({r['short']['ms']} ms)")
    table = markdown(result)
    print(table)
    if not args.no_write and args.split == "heldout":
        publish(RESULTS_PATH, json.dumps(result, indent=1) + "\n", table, BEGIN_MARK, END_MARK)


if __name__ == "__main__":
    main()
