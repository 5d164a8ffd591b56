"""Transcript accuracy: the live pass (tiny.en) and the accurate pass, side by side, as WER.

    .venv/bin/python -m benchmarks.transcript_accuracy [--split heldout|tune]
        [--options live,base-prompt,...] [--no-write] [--show]

The material is benchmarks/transcript_answers.py: answers full of numbers, names and technical
terms, spoken by the split's Kokoro and espeak-ng voices, sent through Opus and back (the audio
of benchmarks/eot_audio.py, cached in benchmarks/.eot-cache) and cut as the voice pipeline
keeps an answer (0.1 s before the first word, 1 s of silence after the last). Each answer is
transcribed by every option: `live` is LocalWhisper as the service runs it (tiny.en, short
window, beam 1); `base-<context>` is the accurate engine (interview/speech/stt/accurate.py,
Whisper base, beam 5) given the answer's question and its plan's vocabulary as `prompt`
(initial_prompt), as `hotwords`, or not at all (`none`). WER is over normalised words (case,
punctuation, number words as digits); "RTF" is compute seconds per second of answer audio on
this machine. Writes benchmarks/results/transcript_accuracy.json and the table in
benchmarks/README.md (HELD-OUT only).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from benchmarks.eot_audio import RATE, ClipAudio
from benchmarks.eot_clips import Clip, Split
from benchmarks.stt_window import edits, speech_runs
from benchmarks.tables import row as table_row
from benchmarks.transcript_answers import answers
from benchmarks.voice_bench import HERE, code_version, machine, publish
from interview.plans import PlanCatalog
from interview.speech.model_files import ModelPaths, models_dir_from_env
from interview.speech.stt.accurate import (
    DEFAULT_CONTEXT_USE,
    TRAILING_SILENCE,
    ContextUse,
    WhisperAccurate,
    accurate_context,
)
from interview.speech.stt.local_whisper import LocalWhisper
from interview.speech.vad import to_float32

RESULTS_PATH = HERE / "results" / "transcript_accuracy.json"
BEGIN_MARK, END_MARK = "<!-- transcript-accuracy:begin -->", "<!-- transcript-accuracy:end -->"
PLANS_DIR = HERE.parent / "interview" / "plans"
ACCURATE_MODEL = "base"
# The answer as the voice pipeline keeps it: a little before the first word, and the silence
# after the last one until the end of the turn was decided.
LEAD, TAIL = int(0.1 * RATE), int(1.0 * RATE)
OPTIONS = ("live", "base-none", "base-prompt", "base-hotwords", "base-split")
DEFAULT_OPTIONS = ("live", f"base-{DEFAULT_CONTEXT_USE}")

_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_UNITS += ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen"]
_UNITS += ["seventeen", "eighteen", "nineteen"]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
NUMBER_WORDS = {w: i for i, w in enumerate(_UNITS)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}


def normalise(text: str) -> list[str]:
    """Lower-case words, punctuation dropped, number words as digits ("twenty nineteen" and
    "2019" agree), a letter and its number joined ("p 95" is "p95")."""
    text = text.lower().replace("\u2019", "'").replace("%", " percent")
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    text = text.replace("-", " ").replace("/", " ")
    words = re.findall(r"[a-z0-9']+", text)
    words = _numbers(words)
    out: list[str] = []
    for word in words:
        if out and word.isdigit() and len(out[-1]) == 1 and out[-1].isalpha() and out[-1] != "a":
            out[-1] += word
        else:
            out.append(word)
    return out


def _numbers(words: list[str]) -> list[str]:
    out: list[str] = []
    value: int | None = None
    for word in words:
        n = NUMBER_WORDS.get(word)
        if n is not None and value is not None and value % 100 >= 20 and value % 10 == 0 and n < 10:
            value += n  # "twenty" "one"
        elif word == "hundred" and value is not None and value < 100:
            value *= 100
        elif word == "thousand" and value is not None and value < 1000:
            value *= 1000
        elif n is not None and value is not None and 10 <= value < 100 and n >= 10:
            value = value * 100 + n  # a year: "twenty nineteen"
        elif n is not None and value is not None and value >= 100 and value % 100 == 0:
            value += n  # "three hundred" "fifty"
        else:
            if value is not None:
                out.append(str(value))
            value = n
            if n is None:
                out.append(word)
    if value is not None:
        out.append(str(value))
    return out


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edits, reference words): Levenshtein distance over this round's normalised words."""
    return edits(normalise(reference), normalise(hypothesis))


def material(split: Split) -> list[dict[str, Any]]:
    """Each answer's audio (speech cut out of the clip) and its context, as the pass gets it."""
    plans = PlanCatalog.load(PLANS_DIR)
    clip_audio = ClipAudio()
    items = []
    for answer, voice in answers(split):
        audio = clip_audio.audio(Clip(split, "finished", (answer.text,), voice))
        runs = speech_runs(audio)
        plan = plans.get(answer.plan)
        question = next(q.text for q in plan.questions if q.id == answer.question)
        items.append(
            {
                "voice": f"{voice.engine}:{voice.name}",
                "reference": answer.text,
                "context": accurate_context(question, plan.vocabulary),
                "audio": to_float32(audio[max(0, runs[0][0] - LEAD) : runs[-1][1] + TAIL]),
            }
        )
    return items


Transcribe = Callable[[NDArray[np.float32], str], str]


def engines(options: Iterable[str], root: Path) -> dict[str, Transcribe]:
    built: dict[str, Transcribe] = {}
    for option in options:
        if option == "live":
            live = LocalWhisper(ModelPaths(root).whisper_dir)
            live.warmup()
            built[option] = _live(live)
            continue
        model, use = option.split("-", 1)
        use, _, tail = use.partition("+tail")
        engine = WhisperAccurate(
            root / f"whisper-{model}",
            context_use=cast("ContextUse", use),
            trailing_silence=float(tail) if tail else TRAILING_SILENCE,
        )
        engine.warmup()
        built[option] = _accurate(engine)
    return built


def _live(stt: LocalWhisper) -> Transcribe:
    return lambda audio, _context: stt.transcribe(audio)


def _accurate(stt: WhisperAccurate) -> Transcribe:
    return lambda audio, context: stt.transcribe_words(audio, context).text


def run(split: Split, options: Iterable[str]) -> dict[str, Any]:
    started = time.time()
    items = material(split)
    transcribers = engines(options, models_dir_from_env())
    rows: list[dict[str, Any]] = []
    for item in items:
        seconds = len(item["audio"]) / RATE
        row: dict[str, Any] = {"voice": item["voice"], "reference": item["reference"]}
        row["seconds"] = round(seconds, 2)
        for name, transcribe in transcribers.items():
            t0 = time.perf_counter()
            text = transcribe(item["audio"], item["context"])
            spent = time.perf_counter() - t0
            errors, row["words"] = word_errors(item["reference"], text)
            row[name] = {"text": text, "errors": errors, "seconds": round(spent, 3)}
        rows.append(row)
    return {
        "machine": machine(),
        "code": code_version(),
        "split": split,
        "seconds": round(time.time() - started),
        "summary": summary(rows, list(transcribers)),
        "rows": rows,
    }


def summary(rows: list[dict[str, Any]], options: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    audio = sum(r["seconds"] for r in rows)
    groups = {"all": rows, "kokoro": [], "espeak": []}
    for r in rows:
        groups[r["voice"].split(":")[0]].append(r)
    for name in options:
        per_answer = [r[name]["errors"] / r["words"] for r in rows]
        out[name] = {
            group: round(sum(r[name]["errors"] for r in g) / max(1, sum(r["words"] for r in g)), 4)
            for group, g in groups.items()
        }
        out[name]["worst_answer"] = round(max(per_answer), 4)
        out[name]["rtf"] = round(sum(r[name]["seconds"] for r in rows) / audio, 3)
    out["answers"] = len(rows)
    out["words"] = sum(r["words"] for r in rows)
    out["audio_seconds"] = round(audio, 1)
    return out


def markdown(result: dict[str, Any]) -> str:
    m, code, s = result["machine"], result.get("code", {}), result["summary"]
    lines = [
        f"Last run {m['date']} on commit {code.get('commit', '?')[:10]}: {m['nproc']} x "
        f"{m['cpu_model']}, load average at start {' '.join(m['loadavg_at_start'])}; split "
        f"{result['split'].upper()}: {s['answers']} answers, {s['words']} words, "
        f"{s['audio_seconds']} s of audio; {result['seconds']} s.",
        "",
        "| Pass | WER all | WER Kokoro | WER espeak-ng | worst answer | s per answer s |",
        "|---|---|---|---|---|---|",
    ]
    for name, o in s.items():
        if not isinstance(o, dict):
            continue
        label = "live (tiny.en)" if name == "live" else f"accurate ({name})"
        lines.append(
            table_row(
                label,
                f"{100 * o['all']:.1f} %",
                f"{100 * o['kokoro']:.1f} %",
                f"{100 * o['espeak']:.1f} %",
                f"{100 * o['worst_answer']:.0f} %",
                f"{o['rtf']:.2f}",
            )
        )
    return "\n".join(lines)


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=("heldout", "tune"), default="heldout")
    parser.add_argument("--options", default=",".join(DEFAULT_OPTIONS), help=", ".join(OPTIONS))
    parser.add_argument("--no-write", action="store_true", help="print, do not write results")
    parser.add_argument("--show", action="store_true", help="print every answer with an error")
    args = parser.parse_args(None if argv is None else list(argv))
    options = [o for o in args.options.split(",") if o]
    unknown = {o.partition("+tail")[0] for o in options} - set(OPTIONS)
    if unknown:
        parser.error(f"unknown options {sorted(unknown)}; choose from {OPTIONS}")
    result = run(args.split, options)
    if args.show:
        for r in result["rows"]:
            print(f"{r['voice']}: {r['reference']}")
            for name in options:
                if r[name]["errors"]:
                    print(f"   {name} ({r[name]['errors']}): {r[name]['text']}")
    table = markdown(result)
    print(table)
    if not args.no_write and args.split == "heldout":
        publish(RESULTS_PATH, json.dumps(result, indent=1) + "\n", table, BEGIN_MARK, END_MARK)


if __name__ == "__main__":
    main()
