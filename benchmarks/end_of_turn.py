"""End of turn: three policies side by side on the labelled clips of benchmarks/eot_clips.py.

    make bench      # or: .venv/bin/python -m benchmarks.end_of_turn [--tune] [--no-write]

Each clip (Kokoro or espeak-ng speech through an Opus round trip, benchmarks/eot_audio.py) is fed
in 20 ms chunks on a synthetic clock to the real TurnDetector (real silero VAD), once per policy:
- fixed: today's 0.8 s of silence;
- smart-turn: pipecat's defaults, Smart Turn alone (judged after 0.2 s of silence, the turn ends
  if its probability is above 0.5, else after 3 s);
- ours: interview.voice.endpointing.EndpointingPolicy with Smart Turn's probability and the
  transcript so far (each finished stretch transcribed by faster-whisper tiny.en at its pause,
  as interview.voice.listener does), patient fallback 2.5 s.
The decision cannot come before its evidence: the time Smart Turn (and, for ours, STT of the
last stretch) took at a pause, measured on this machine, is added to the silence at which it was
judged. Evidence for the same audio is computed once and reused (same audio, same answer).

A first pass records every pause of every clip with its evidence; `--tune` grid-searches the
EndpointingOptions thresholds on the TUNE split's records (never HELD-OUT) and prints the best.
Writes benchmarks/results/end_of_turn.json and the table in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from benchmarks.eot_audio import CACHE_DIR, RATE, ClipAudio
from benchmarks.eot_clips import PAUSES, SPLITS, TRAILING_SILENCE, Clip, clips
from benchmarks.voice_bench import HERE, code_version, machine, publish, write_readme
from harness.speech_audio import Int16Array
from interview.speech.model_files import SMART_TURN, ModelPaths, models_dir_from_env
from interview.speech.stt.local_whisper import LocalWhisper
from interview.speech.turn.smart_turn import SmartTurn
from interview.speech.vad import SileroVAD, to_float32
from interview.voice.endpointing import EndpointingOptions, EndpointingPolicy, text_verdict
from interview.voice.listener import JUDGED_SAMPLES, MIN_STRETCH_SAMPLES
from interview.voice.turn_detector import TAIL_SECONDS, DetectorOptions, TurnDetector, TurnEvent

RESULTS_PATH = HERE / "results" / "end_of_turn.json"
BEGIN_MARK, END_MARK = "<!-- end-of-turn:begin -->", "<!-- end-of-turn:end -->"
CHUNK = 320  # 20 ms at 16 kHz, as the gateway hands audio to the listener
STEP = CHUNK / RATE
EPOCH = 1_700_000_000.0
FIXED_SILENCE = 0.8  # END_OF_TURN_SILENCE_SECONDS before issue 11
PIPECAT_STOP, PIPECAT_THRESHOLD, PIPECAT_FALLBACK = 0.2, 0.5, 3.0
TARGET_MAX_PAUSE, TARGET_MEAN_WAIT = 2.0, 0.4
WAIT_BUDGET = FIXED_SILENCE  # tuning: a mean wait no longer than today's
EVIDENCE_CACHE = CACHE_DIR / "evidence.json"
TAIL_SAMPLES = int(TAIL_SECONDS * RATE)
SMART_TURN_TRIM = False  # set by --smart-turn-trim
# The engines' identity: bump when the STT or Smart Turn model (or how it is called) changes.
EVIDENCE_VERSION = "whisper-tiny.en-short-window+smart-turn-v3.2-cpu/2"


@dataclass(frozen=True)
class Evidence:
    silence: float  # seconds of silence when the pause was judged
    probability: float
    text: str  # the answer's transcript so far
    stt_seconds: float  # transcribing the last stretch (0 when it was too short to send)
    smart_turn_seconds: float


@dataclass
class Pause:
    """One pause of a clip as the record pass saw it (detector never ending the turn)."""

    evidence: Evidence
    length: float  # the longest silence it reached; inf for the silence after the last word
    final: bool


class Judge:
    """The evidence engines, with each answer (and the time it took) cached by the audio it was
    computed on, in memory and in EVIDENCE_CACHE: a later run reuses the first run's evidence
    and its measured times unless told `fresh`."""

    def __init__(self, paths: ModelPaths, fresh: bool = False) -> None:
        self.stt = LocalWhisper(paths.whisper_dir)
        self.stt.warmup()
        self.smart_turn = SmartTurn(paths.smart_turn, model_id=SMART_TURN.sha256)
        self.smart_turn.warmup()
        self._texts: dict[str, tuple[str, float]] = {}
        self._probabilities: dict[str, tuple[float, float]] = {}
        self.computed = 0
        if not fresh and EVIDENCE_CACHE.exists():
            cached = json.loads(EVIDENCE_CACHE.read_text())
            if cached.get("version") == EVIDENCE_VERSION:
                self._texts = {k: (t, s) for k, (t, s) in cached["stt"].items()}
                self._probabilities = {k: (p, s) for k, (p, s) in cached["smart_turn"].items()}

    def save(self) -> None:
        EVIDENCE_CACHE.parent.mkdir(parents=True, exist_ok=True)
        data = {"version": EVIDENCE_VERSION, "stt": self._texts, "smart_turn": self._probabilities}
        EVIDENCE_CACHE.write_text(json.dumps(data))

    def transcribe(self, audio: Int16Array) -> tuple[str, float]:
        key = _digest(audio)
        if key not in self._texts:
            self.computed += 1
            started = time.perf_counter()
            text = self.stt.transcribe(to_float32(audio))
            self._texts[key] = (text, time.perf_counter() - started)
        return self._texts[key]

    def probability(self, audio: Int16Array) -> tuple[float, float]:
        key = _digest(audio)
        if key not in self._probabilities:
            self.computed += 1
            started = time.perf_counter()
            p = self.smart_turn.probability(to_float32(audio))
            self._probabilities[key] = (p, time.perf_counter() - started)
        return self._probabilities[key]


def _digest(audio: Int16Array) -> str:
    return hashlib.sha256(audio.tobytes()).hexdigest()


class Answer:
    """What the listener knows about the answer being given: its stretches' transcripts."""

    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self.reset()

    def reset(self) -> None:
        self.covered = 0
        self.texts: list[str] = []

    def evidence(self, detector: TurnDetector) -> Evidence:
        audio = detector.current_audio()
        judged = smart_turn_audio(audio)
        stt_seconds = 0.0
        if len(audio) - self.covered >= MIN_STRETCH_SAMPLES:
            text, stt_seconds = self.judge.transcribe(audio[self.covered :].copy())
            self.texts.append(text.strip())
            self.covered = len(audio)
        probability, smart_seconds = self.judge.probability(judged)
        transcript = " ".join(t for t in self.texts if t)
        return Evidence(detector.silence, probability, transcript, stt_seconds, smart_seconds)


def smart_turn_audio(audio: Int16Array) -> Int16Array:
    """What Smart Turn judges at a pause, as interview.voice.listener passes it (the experiment
    `--smart-turn-trim`: without the detector's tail of silence after the last speech frame)."""
    if SMART_TURN_TRIM and len(audio) > TAIL_SAMPLES:
        audio = audio[:-TAIL_SAMPLES]
    return audio[-JUDGED_SAMPLES:]


# A policy: the detector's options, and at each pause the silence after which the turn ends
# (None: leave the fallback), given the evidence; the evidence's compute time is added here.
Decide = Callable[[Evidence], float | None]


@dataclass(frozen=True)
class Policy:
    name: str
    options: DetectorOptions
    decide: Decide
    fallback: float | None  # None: the policy has no other rule to fall back from


def fixed_policy() -> Policy:
    options = DetectorOptions(end_silence=FIXED_SILENCE)
    return Policy("fixed 0.8 s", options, lambda e: None, None)


def smart_turn_policy() -> Policy:
    def decide(e: Evidence) -> float | None:
        if e.probability > PIPECAT_THRESHOLD:
            return e.silence + e.smart_turn_seconds
        return None

    options = DetectorOptions(end_silence=PIPECAT_FALLBACK, decide_after=PIPECAT_STOP)
    return Policy("Smart Turn alone", options, decide, PIPECAT_FALLBACK)


def our_policy(options: EndpointingOptions | None = None) -> Policy:
    endpointing = EndpointingPolicy(options)
    o = endpointing.options

    def decide(e: Evidence) -> float:
        required = endpointing.required_silence(e.probability, e.text)
        return max(required, e.silence + e.stt_seconds + e.smart_turn_seconds)

    # The detector's judging moment is the listener's (DetectorOptions' default): the evidence
    # is gathered from there, and the policy's shortest wait applies on top.
    detector = DetectorOptions(end_silence=o.fallback)
    return Policy("ours", detector, decide, o.fallback)


@dataclass
class ClipResult:
    turns: int = 0
    waits: list[float] = field(default_factory=list)  # silence that ended each turn

    def cut_off(self, clip: Clip) -> bool:
        """A thinking answer (fed up to its last word) must not end at all; a finished one must
        end once."""
        return self.turns > (0 if clip.kind == "thinking" else 1)


def drive(audio: Int16Array, policy: Policy, vad: SileroVAD, judge: Judge) -> ClipResult:
    """Feed a clip to the real detector, applying the policy at each pause."""
    detector = TurnDetector(vad.stream(), policy.options)
    answer = Answer(judge)
    result = ClipResult()
    for i, offset in enumerate(range(0, len(audio), CHUNK)):
        now = EPOCH + (i + 1) * STEP
        event = detector.feed(audio[offset : offset + CHUNK], now=now)
        if event is TurnEvent.speech_started:
            answer.reset()
        elif event is TurnEvent.pause:
            seconds = policy.decide(answer.evidence(detector))
            if seconds is not None:
                detector.end_after(seconds)
        elif event is TurnEvent.turn_ended:
            turn = detector.take_turn(now=now)
            result.turns += 1
            result.waits.append(turn.detected - turn.speech_ended)
            answer.reset()
    return result


def record(audio: Int16Array, vad: SileroVAD, judge: Judge) -> list[Pause]:
    """Every pause of one clip with its evidence, the detector never ending the turn."""
    detector = TurnDetector(vad.stream(), DetectorOptions(end_silence=math.inf))
    answer = Answer(judge)
    pauses: list[Pause] = []
    deepest = 0.0
    for offset in range(0, len(audio), CHUNK):
        event = detector.feed(audio[offset : offset + CHUNK], now=EPOCH)
        if event is TurnEvent.resumed and pauses:
            pauses[-1].length = deepest
        if event is TurnEvent.pause:
            pauses.append(Pause(answer.evidence(detector), math.inf, final=False))
        deepest = detector.silence
    if pauses and pauses[-1].length == math.inf:
        pauses[-1].final = True
    return pauses


def replay(pauses: list[Pause], decide: Decide) -> tuple[bool, float | None]:
    """(cut off, wait after the last word) of a recorded clip under a policy: the turn ends at
    the first pause whose decided silence it reaches. For tuning; the results come from drive."""
    for pause in pauses:
        end = decide(pause.evidence)
        if pause.final:
            return False, end
        if end is not None and end <= pause.length:
            return True, None
    return False, None


# -- tuning ------------------------------------------------------------------------------------

GRID = {
    "finished_wait": (0.25, 0.4, 0.6),
    "finished_probability": (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9),
    "finished_objection_wait": (0.6, 1.0, 1.5, 2.5),
    "unsure_fast_wait": (0.4, 0.6, 0.9, 1.2),
    "unsure_slow_wait": (1.5, 2.0, 2.5),
}


def score(records: list[tuple[Clip, list[Pause]]], options: EndpointingOptions) -> dict[str, Any]:
    decide = our_policy(options).decide
    cuts = {p: 0 for p in PAUSES}
    waits: list[float] = []
    for clip, pauses in records:
        cut, wait = replay(pauses, decide)
        if clip.kind == "thinking" and cut and clip.pause is not None:
            cuts[clip.pause] += 1
        if clip.kind == "finished":
            waits.append(wait if wait is not None else options.fallback)
        # A thinking answer is fed up to its last word: its last pause is inside it.
    short_cuts = sum(n for pause, n in cuts.items() if pause <= TARGET_MAX_PAUSE)
    return {
        "cutoffs_up_to_2s": short_cuts,
        "cutoffs": sum(cuts.values()),
        "mean_wait": float(np.mean(waits)) if waits else 0.0,
    }


def tune(records: list[tuple[Clip, list[Pause]]]) -> dict[str, Any]:
    """The grid's best on the TUNE records: within today's wait (a mean after finished answers
    of at most WAIT_BUDGET, the fixed 0.8 s), the fewest cut-offs on pauses up to 2 s, then
    the fewest overall, then the shortest mean wait. Also the trade-off: for each number of
    cut-offs up to 2 s, the shortest mean wait the grid reaches with it."""
    base = EndpointingOptions()
    rows = []
    for values in itertools.product(*GRID.values()):
        options = replace(base, **dict(zip(GRID, values, strict=True)))
        rows.append((options, score(records, options)))
    best, best_score = min(
        rows,
        key=lambda r: (
            r[1]["mean_wait"] > WAIT_BUDGET,
            r[1]["cutoffs_up_to_2s"],
            r[1]["cutoffs"],
            round(r[1]["mean_wait"], 3),
        ),
    )
    front: dict[int, tuple[float, EndpointingOptions]] = {}
    for options, scored in rows:
        cuts, wait = scored["cutoffs_up_to_2s"], scored["mean_wait"]
        if cuts not in front or wait < front[cuts][0]:
            front[cuts] = (wait, options)
    trade_off: list[dict[str, Any]] = []
    for cuts in sorted(front):
        wait, options = front[cuts]
        if not trade_off or wait < trade_off[-1]["mean_wait"]:
            tuned = {name: getattr(options, name) for name in GRID}
            trade_off.append({"cutoffs_up_to_2s": cuts, "mean_wait": round(wait, 3), **tuned})
    return {
        "wait_budget": WAIT_BUDGET,
        "trade_off": trade_off,
        "grid": {k: list(v) for k, v in GRID.items()},
        "combinations": len(rows),
        "best": {f.name: getattr(best, f.name) for f in fields(best) if f.name in GRID},
        "best_score": best_score,
        "defaults_score": score(records, base),
    }


# -- the run -----------------------------------------------------------------------------------


def summarise(
    split_clips: list[Clip], results: list[ClipResult], fallback: float | None
) -> dict[str, Any]:
    thinking = [(c, r) for c, r in zip(split_clips, results, strict=True) if c.kind == "thinking"]
    finished = [(c, r) for c, r in zip(split_clips, results, strict=True) if c.kind == "finished"]
    by_pause = {
        f"{pause:.1f}": {
            "cutoffs": sum(r.cut_off(c) for c, r in thinking if c.pause == pause),
            "n": sum(1 for c, _r in thinking if c.pause == pause),
        }
        for pause in PAUSES
    }
    waits = [r.waits[-1] for _c, r in finished if r.waits]
    return {
        "thinking": {
            "n": len(thinking),
            "cutoffs": sum(r.cut_off(c) for c, r in thinking),
            "cutoffs_up_to_2s": sum(
                r.cut_off(c) for c, r in thinking if (c.pause or 0) <= TARGET_MAX_PAUSE
            ),
            "n_up_to_2s": sum(1 for c, _r in thinking if (c.pause or 0) <= TARGET_MAX_PAUSE),
            "by_pause": by_pause,
        },
        "finished": {
            "n": len(finished),
            "mean_wait": _round(np.mean(waits)) if waits else None,
            "p50_wait": _round(np.percentile(waits, 50)) if waits else None,
            "p95_wait": _round(np.percentile(waits, 95)) if waits else None,
            "max_wait": _round(max(waits)) if waits else None,
            # never ended before the fallback: the policy recognised nothing
            "at_fallback": None
            if fallback is None
            else sum(1 for w in waits if w >= fallback - 0.02),
            "split_in_two": sum(r.cut_off(c) for c, r in finished),
        },
    }


def _round(value: float | np.floating[Any]) -> float:
    return round(float(value), 3)


def evidence_summary(records: list[tuple[Clip, list[Pause]]]) -> dict[str, Any]:
    """What the evidence looked like: at each thinking pause, and after each finished answer."""
    at_thinking = [ps[0].evidence for c, ps in records if c.kind == "thinking" and ps]
    at_end = [ps[-1].evidence for c, ps in records if c.kind == "finished" and ps]

    def describe(items: list[Evidence]) -> dict[str, Any]:
        if not items:
            return {"n": 0}
        verdicts = [str(text_verdict(e.text)) for e in items]
        compute = [e.stt_seconds + e.smart_turn_seconds for e in items]
        return {
            "n": len(items),
            "smart_turn_above_0.5": sum(e.probability > 0.5 for e in items),
            "smart_turn_median": _round(np.median([e.probability for e in items])),
            "text_verdicts": {v: verdicts.count(v) for v in sorted(set(verdicts))},
            "stt_seconds_mean": _round(np.mean([e.stt_seconds for e in items])),
            "smart_turn_seconds_mean": _round(np.mean([e.smart_turn_seconds for e in items])),
            "compute_seconds_p95": _round(np.percentile(compute, 95)),
        }

    return {"at_thinking_pause": describe(at_thinking), "after_finished_answer": describe(at_end)}


def heard(clip: Clip, audio: Int16Array) -> Int16Array:
    """What is fed of a clip. A thinking answer stops at its last word: all that counts is
    whether the turn ended before then (a cut-off), so its end is left out (it would only cost
    a transcription per pause length). Opus and the resampler are causal: cutting after the
    round trip changes nothing before the cut."""
    if clip.kind == "thinking":
        return audio[: len(audio) - int(TRAILING_SILENCE * RATE)]
    return audio


def run(do_tune: bool, fresh: bool) -> dict[str, Any]:
    started = time.time()
    paths = ModelPaths(models_dir_from_env())
    clip_audio = ClipAudio()
    all_clips = {split: clips(split) for split in SPLITS}
    audio = {c: heard(c, clip_audio.audio(c)) for split in SPLITS for c in all_clips[split]}
    generated = time.time() - started
    print(f">> {len(audio)} clips ready ({clip_audio.generated} generated) in {generated:.0f} s")
    vad = SileroVAD(paths.silero_vad)
    vad.load()
    judge = Judge(paths, fresh)
    records = {
        split: [(c, record(audio[c], vad, judge)) for c in all_clips[split]] for split in SPLITS
    }
    judge.save()
    print(f">> evidence recorded at {time.time() - started:.0f} s ({judge.computed} computed)")
    policies = (fixed_policy(), smart_turn_policy(), our_policy())
    result: dict[str, Any] = {
        "machine": machine(),
        "code": code_version(),
        "options": asdict(EndpointingOptions()),
        "clips": {split: len(all_clips[split]) for split in SPLITS},
        "smart_turn_trim": SMART_TURN_TRIM,
        "evidence_computed": judge.computed,  # 0: every piece came from an earlier run's cache
        "splits": {},
        "evidence": {split: evidence_summary(records[split]) for split in SPLITS},
    }
    per_clip: list[dict[str, Any]] = []
    for split in SPLITS:
        split_result = {}
        outcomes = {}
        for policy in policies:
            runs = [drive(audio[c], policy, vad, judge) for c in all_clips[split]]
            split_result[policy.name] = summarise(all_clips[split], runs, policy.fallback)
            outcomes[policy.name] = runs
        result["splits"][split] = split_result
        ours = our_policy().decide
        for i, (clip, pauses) in enumerate(records[split]):
            first = pauses[0].evidence if pauses else None
            per_clip.append(
                {
                    "clip": clip.name,
                    # the same for every pause length of a text and voice: kept once
                    "at_first_pause": None
                    if first is None or clip.pause not in (None, PAUSES[0])
                    else [first.text, str(text_verdict(first.text)), round(first.probability, 3)],
                    "replayed_ours_cut": replay(pauses, ours)[0],
                    "driven_ours_cut": outcomes["ours"][i].cut_off(clip),
                    # per policy: turns ended, and the silence that ended the last one
                    **{
                        name: [runs[i].turns, _round(runs[i].waits[-1]) if runs[i].waits else None]
                        for name, runs in outcomes.items()
                    },
                }
            )
        print(f">> {split} done at {time.time() - started:.0f} s")
    # The replay used for tuning must agree with the driven detector.
    result["replay_agrees"] = sum(c["replayed_ours_cut"] == c["driven_ours_cut"] for c in per_clip)
    if do_tune:
        result["tune"] = tune(records["tune"])
    result["seconds"] = round(time.time() - started)
    result["clip_seconds"] = round(generated)
    result["per_clip"] = per_clip
    return result


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    code = result.get("code", {})
    lines = [
        f"Last run {m['date']} on commit {code.get('commit', '?')[:10]}: {m['nproc']} x "
        f"{m['cpu_model']}, load average at start {' '.join(m['loadavg_at_start'])}; "
        f"{result['seconds']} s (of which {result['clip_seconds']} s making clips); "
        f"{result['clips']['tune']} TUNE and {result['clips']['heldout']} HELD-OUT clips; "
        f"{result['evidence_computed']} pieces of evidence computed in this run (any other "
        "reused, with its measured time, from the run that computed it).",
        "",
    ]
    for split in ("heldout", "tune"):
        title = "HELD-OUT (the result)" if split == "heldout" else "TUNE (thresholds chosen here)"
        lines += [
            f"**{title}**: cut-offs on thinking pauses (turn ended inside the pause), by pause "
            "length, and the wait after finished answers (last speech frame -> end of turn, "
            "evidence compute included).",
            "",
            "| Policy | Cut-offs, all | up to 2.0 s | "
            + " | ".join(f"{p:.1f} s" for p in PAUSES)
            + " | Wait mean | p50 | p95 | max | at fallback | split in two |",
            "|---|---|---|" + "---|" * len(PAUSES) + "---|---|---|---|---|---|",
        ]
        for name, s in result["splits"][split].items():
            t, f = s["thinking"], s["finished"]
            cells = [
                name,
                f"{t['cutoffs']}/{t['n']} ({100 * t['cutoffs'] / max(1, t['n']):.0f} %)",
                f"{t['cutoffs_up_to_2s']}/{t['n_up_to_2s']}",
                *(f"{b['cutoffs']}/{b['n']}" for b in t["by_pause"].values()),
                *(_ms(f[k]) for k in ("mean_wait", "p50_wait", "p95_wait", "max_wait")),
                "-" if f["at_fallback"] is None else f"{f['at_fallback']}/{f['n']}",
                f"{f['split_in_two']}/{f['n']}",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        ev = result["evidence"][split]
        think, end = ev["at_thinking_pause"], ev["after_finished_answer"]
        lines += [
            "",
            f"Evidence ({split}): at the thinking pause Smart Turn gave > 0.5 in "
            f"{think['smart_turn_above_0.5']}/{think['n']} (median {think['smart_turn_median']}), "
            f"the words read {_verdicts(think)}; after a finished answer > 0.5 in "
            f"{end['smart_turn_above_0.5']}/{end['n']} (median {end['smart_turn_median']}), "
            f"words {_verdicts(end)}. Compute at a pause: STT mean "
            f"{_ms(end['stt_seconds_mean'])} ms, Smart Turn mean "
            f"{_ms(end['smart_turn_seconds_mean'])} ms, together p95 "
            f"{_ms(end['compute_seconds_p95'])} ms (after finished answers).",
            "",
        ]
    options = result["options"]
    lines.append(
        "Ours ran with EndpointingOptions("
        + ", ".join(f"{k}={v}" for k, v in options.items())
        + ")."
    )
    if "tune" in result:
        tuned = result["tune"]
        best = tuned["best_score"]
        within = best["mean_wait"] <= tuned["wait_budget"]
        lines += [
            "",
            f"Grid search on TUNE ({tuned['combinations']} combinations, replayed with this run's "
            "evidence and compute times): "
            + (
                f"best within a mean wait of {tuned['wait_budget']} s: "
                if within
                else f"no combination kept the mean wait within {tuned['wait_budget']} s in "
                "this run; fewest cut-offs: "
            )
            + ", ".join(f"{k}={v}" for k, v in tuned["best"].items())
            + f", scoring {_score(best)}; the committed defaults score "
            f"{_score(tuned['defaults_score'])}. The trade-off on TUNE (fewest cut-offs on "
            "pauses up to 2.0 s for a mean wait):",
            "",
            "| Cut-offs up to 2.0 s (of "
            f"{result['splits']['tune']['ours']['thinking']['n_up_to_2s']}) | Mean wait ms | "
            + " | ".join(GRID)
            + " |",
            "|---|---|" + "---|" * len(GRID),
        ]
        for point in tuned["trade_off"]:
            lines.append(
                f"| {point['cutoffs_up_to_2s']} | {_ms(point['mean_wait'])} | "
                + " | ".join(str(point[k]) for k in GRID)
                + " |"
            )
    return "\n".join(lines)


def _score(scored: dict[str, Any]) -> str:
    return (
        f"{scored['cutoffs_up_to_2s']} cut-offs up to 2.0 s, {scored['cutoffs']} in all, "
        f"mean wait {_ms(scored['mean_wait'])} ms"
    )


def _verdicts(summary: dict[str, Any]) -> str:
    return ", ".join(f"{v} {n}" for v, n in summary.get("text_verdicts", {}).items())


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.0f}"


def to_json(result: dict[str, Any]) -> str:
    """Indented, but one line per clip: 576 clips stay readable and small."""
    summary = {k: v for k, v in result.items() if k != "per_clip"}
    clips_json = ",\n    ".join(json.dumps(c) for c in result.get("per_clip", []))
    head = json.dumps(summary, indent=2)[:-2]
    return f'{head},\n  "per_clip": [\n    {clips_json}\n  ]\n}}\n'


def rewrite_readme() -> None:
    """The README's table again from the last results (after changing only the table's form)."""
    write_readme(markdown(json.loads(RESULTS_PATH.read_text())), BEGIN_MARK, END_MARK)


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tune", action="store_true", help="grid-search the TUNE split too")
    parser.add_argument("--no-write", action="store_true", help="print, do not write results")
    parser.add_argument(
        "--fresh", action="store_true", help="recompute (and re-time) every piece of evidence"
    )
    parser.add_argument(
        "--smart-turn-trim",
        action="store_true",
        help="experiment: Smart Turn judges the audio without the silence after the last word",
    )
    args = parser.parse_args(None if argv is None else list(argv))
    global SMART_TURN_TRIM
    SMART_TURN_TRIM = args.smart_turn_trim
    result = run(args.tune, args.fresh)
    table = markdown(result)
    print(table)
    if not args.no_write:
        publish(RESULTS_PATH, to_json(result), table, BEGIN_MARK, END_MARK)


if __name__ == "__main__":
    main()
