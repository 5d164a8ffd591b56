"""Spoken test audio: espeak-ng speech as 16-bit mono WAV, and small helpers to measure it.

Everything here works on int16 mono numpy arrays at `SAMPLE_RATE` (48 kHz) unless told
otherwise: 48 kHz is what WebRTC's Opus runs at, so the voice client can send these samples
without resampling and what comes back can be compared sample-rate for sample-rate.

espeak-ng writes 22.05 kHz; sox resamples it (its default high-quality `rate` effect, with
dither off so digital silence stays exactly zero, which keeps "is this silent" checks exact).
espeak-ng also pads a clip with a few hundred ms of trailing silence; `speak` trims that,
so joining clips with `join(first, 0.7, second)` really puts a 0.7 s pause between words.

Generated WAVs are cached by (text, voice, rate, sample rate) in a temp dir, because espeak +
sox take ~50-150 ms per clip and tests reuse the same sentences.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 48_000

# RMS (on the int16 scale) above which a 20 ms frame counts as speech. espeak-ng speech is
# 300-6000 in its voiced parts; Opus-decoded digital silence is 0-5. 200 (about -44 dBFS)
# sits well between, and still catches the quieter consonants after an Opus round trip.
SPEECH_RMS = 200.0

# Bump when the way clips are generated changes, so stale cached files are not reused.
_CACHE_VERSION = 1

Int16Array = npt.NDArray[np.int16]


def cache_dir() -> Path:
    """Where generated clips are kept: $SPOOL_SPEECH_CACHE, else a fixed dir under the temp dir.

    A fixed path (not mkdtemp) so separate pytest runs and xdist workers share one cache.
    """
    directory = Path(
        os.environ.get("SPOOL_SPEECH_CACHE") or Path(tempfile.gettempdir()) / "spool-speech-cache"
    )
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise RuntimeError(
            f"{tool} is not installed: run `make test` or scripts/ensure-system-packages.sh"
        )
    return found


def speak(
    text: str,
    path: str | os.PathLike[str] | None = None,
    *,
    voice: str = "en-us",
    rate_wpm: int = 160,
    sample_rate: int = SAMPLE_RATE,
) -> Path:
    """Synthesize `text` with espeak-ng into a 16-bit mono WAV at `sample_rate`.

    Returns `path` when given (the cached clip is copied there), else the cached file itself,
    which callers must not modify. Leading/trailing silence is trimmed (see module doc).
    """
    if not text.strip():
        raise ValueError("speak() needs some text")
    key = hashlib.sha256(
        repr((_CACHE_VERSION, text, voice, int(rate_wpm), int(sample_rate))).encode()
    ).hexdigest()[:24]
    cached = cache_dir() / f"{key}.wav"
    if not cached.exists():
        _synthesize(text, cached, voice=voice, rate_wpm=rate_wpm, sample_rate=sample_rate)
    if path is None:
        return cached
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, target)
    return target


def _synthesize(text: str, target: Path, *, voice: str, rate_wpm: int, sample_rate: int) -> None:
    espeak = _require("espeak-ng")
    sox = _require("sox")
    with tempfile.TemporaryDirectory(prefix="spool-speak-") as work:
        raw = Path(work) / "espeak.wav"
        resampled = Path(work) / "resampled.wav"
        # Text goes in on stdin, so text starting with "-" is never read as an option.
        subprocess.run(
            [espeak, "-v", voice, "-s", str(int(rate_wpm)), "-w", str(raw), "--stdin"],
            input=text.encode(),
            check=True,
            capture_output=True,
        )
        # -D: no dither, so silence stays exactly 0 (dither would add RMS ~1 noise everywhere).
        subprocess.run(
            [sox, "-D", str(raw), "-r", str(sample_rate), "-b", "16", "-c", "1", str(resampled)],
            check=True,
            capture_output=True,
        )
        rate, samples = load_wav(resampled)
        samples = trim_silence(samples, rate)
        if samples.size == 0:
            raise RuntimeError(f"espeak-ng produced no audible speech for {text!r}")
        # Write next to the target and rename: concurrent test processes never see half a file.
        partial = target.with_name(f"{target.stem}.{os.getpid()}.partial")
        save_wav(partial, samples, rate)
        os.replace(partial, target)


def speech(text: str, *, voice: str = "en-us", rate_wpm: int = 160) -> Int16Array:
    """`speak` at 48 kHz, loaded: the int16 samples of `text`."""
    return load_wav(speak(text, voice=voice, rate_wpm=rate_wpm))[1]


def load_wav(path: str | os.PathLike[str]) -> tuple[int, Int16Array]:
    """Read a 16-bit PCM WAV as (sample_rate, int16 mono samples); stereo is averaged."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        channels = wav.getnchannels()
        rate = wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    if channels > 1:
        data = data.reshape(-1, channels).astype(np.int32).mean(axis=1).astype(np.int16)
    return rate, data.astype(np.int16, copy=True)


def save_wav(
    path: str | os.PathLike[str], samples: npt.ArrayLike, sample_rate: int = SAMPLE_RATE
) -> Path:
    """Write int16 mono samples as a 16-bit PCM WAV (e.g. to keep a received reply for review)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = as_int16(samples)
    with wave.open(str(target), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(int(sample_rate))
        wav.writeframes(data.astype("<i2").tobytes())
    return target


def as_int16(samples: npt.ArrayLike) -> Int16Array:
    """int16 mono from int16 or float ([-1, 1]) input; floats are clipped, not wrapped."""
    data = np.asarray(samples)
    if data.ndim > 1:
        data = data.reshape(-1) if 1 in data.shape else data.mean(axis=0)
    if np.issubdtype(data.dtype, np.floating):
        return np.clip(np.round(data * 32767.0), -32768, 32767).astype(np.int16)
    return data.astype(np.int16, copy=False)


def silence(seconds: float, sample_rate: int = SAMPLE_RATE) -> Int16Array:
    """`seconds` of digital silence."""
    if seconds < 0:
        raise ValueError("silence needs a non-negative duration")
    return np.zeros(round(seconds * sample_rate), dtype=np.int16)


def join(
    *parts: npt.ArrayLike | float | str | os.PathLike[str], sample_rate: int = SAMPLE_RATE
) -> Int16Array:
    """Concatenate clips and pauses: arrays are samples, numbers are seconds of silence,
    paths are WAVs (resampled to `sample_rate` if needed).

    `join(speech("I worked on"), 0.7, speech("payment systems."))` is an answer with a 0.7 s
    mid-sentence pause.
    """
    pieces: list[Int16Array] = []
    for part in parts:
        if isinstance(part, int | float):
            pieces.append(silence(float(part), sample_rate))
        elif isinstance(part, str | os.PathLike):
            rate, samples = load_wav(part)
            pieces.append(resample(samples, rate, sample_rate))
        else:
            pieces.append(as_int16(part))
    if not pieces:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(pieces)


def answer_with_pause(
    first: str,
    second: str,
    pause: float = 0.7,
    *,
    voice: str = "en-us",
    rate_wpm: int = 160,
) -> Int16Array:
    """Two espeak clips joined by `pause` seconds of silence, at 48 kHz."""
    return join(
        speech(first, voice=voice, rate_wpm=rate_wpm),
        pause,
        speech(second, voice=voice, rate_wpm=rate_wpm),
    )


def resample(samples: npt.ArrayLike, from_rate: int, to_rate: int) -> Int16Array:
    """Linear-interpolation resampling.

    Good enough for test input (speech through a speech codec); not for listening tests.
    For clean clips generate them at the wanted rate with `speak(sample_rate=...)` instead.
    """
    data = as_int16(samples)
    if from_rate == to_rate or data.size == 0:
        return data
    count = round(data.size * to_rate / from_rate)
    positions = np.arange(count) * (from_rate / to_rate)
    out = np.interp(positions, np.arange(data.size), data.astype(np.float64))
    result: Int16Array = np.clip(np.round(out), -32768, 32767).astype(np.int16)
    return result


def rms(samples: npt.ArrayLike) -> float:
    """Root mean square on the int16 scale (0 for an empty array)."""
    data = np.asarray(samples, dtype=np.float64)
    if data.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(data))))


def is_speech(samples: npt.ArrayLike, threshold: float = SPEECH_RMS) -> bool:
    """Whether a frame (or clip) is loud enough to be speech rather than silence."""
    return rms(samples) > threshold


def window_rms(
    samples: npt.ArrayLike, sample_rate: int = SAMPLE_RATE, window: float = 0.02
) -> npt.NDArray[np.float64]:
    """RMS of consecutive `window`-second windows (a partial last window is included)."""
    data = np.asarray(samples, dtype=np.float64).reshape(-1)
    size = max(1, round(window * sample_rate))
    if data.size == 0:
        return np.zeros(0)
    padded = np.zeros(-(-data.size // size) * size)
    padded[: data.size] = data
    result: npt.NDArray[np.float64] = np.sqrt(np.mean(np.square(padded.reshape(-1, size)), axis=1))
    return result


def speech_seconds(
    samples: npt.ArrayLike,
    sample_rate: int = SAMPLE_RATE,
    threshold: float = SPEECH_RMS,
    window: float = 0.02,
) -> float:
    """Seconds of audio whose `window`-long RMS is above `threshold`: a crude energy VAD."""
    loud = window_rms(samples, sample_rate, window) > threshold
    return float(np.count_nonzero(loud) * window)


def speech_bounds(
    samples: npt.ArrayLike,
    sample_rate: int = SAMPLE_RATE,
    threshold: float = SPEECH_RMS,
    window: float = 0.01,
) -> tuple[int, int] | None:
    """(first, last + 1) sample index of the loud `window`s, or None if nothing is loud."""
    data = np.asarray(samples).reshape(-1)
    loud = np.flatnonzero(window_rms(data, sample_rate, window) > threshold)
    if loud.size == 0:
        return None
    size = max(1, round(window * sample_rate))
    return int(loud[0]) * size, min(data.size, (int(loud[-1]) + 1) * size)


def trim_silence(
    samples: npt.ArrayLike,
    sample_rate: int = SAMPLE_RATE,
    threshold: float = 30.0,
    margin: float = 0.02,
) -> Int16Array:
    """Drop leading/trailing near-silence, keeping `margin` seconds around the sound.

    The threshold is low (30, not SPEECH_RMS) on purpose: it should cut espeak's padding but
    keep the soft start and decay of the words.
    """
    data = as_int16(samples)
    bounds = speech_bounds(data, sample_rate, threshold)
    if bounds is None:
        return data[:0]
    keep = round(margin * sample_rate)
    return data[max(0, bounds[0] - keep) : min(data.size, bounds[1] + keep)].copy()


def duration(samples: Sequence[object] | npt.NDArray[np.generic], sample_rate: int) -> float:
    """Length in seconds."""
    return len(samples) / sample_rate
