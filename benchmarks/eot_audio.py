"""The audio of the end-of-turn clips (benchmarks/eot_clips.py), as the server would receive it.

Each part is spoken by Kokoro (kokoro-onnx, the project's own TTS engine) or espeak-ng
(harness/speech_audio.py), its leading and trailing silence trimmed, the parts joined with the
clip's pause and followed by silence, then sent through Opus at 48 kHz (20 ms frames, 32 kbit/s,
VoIP mode, as a browser's microphone track) and decoded and resampled to the 16 kHz the turn
detector hears. Clips are cached as WAV files in `CACHE_DIR` (gitignored): a warm run only
reads them.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from benchmarks.eot_clips import TRAILING_SILENCE, Clip, Voice
from harness.speech_audio import (
    Int16Array,
    as_int16,
    join,
    load_wav,
    save_wav,
    speech,
    trim_silence,
)
from interview.speech.model_files import ModelPaths, models_dir_from_env
from interview.speech.tts.kokoro import KOKORO_SAMPLE_RATE, KokoroTTS

HERE = Path(__file__).resolve().parent
CACHE_DIR = HERE / ".eot-cache"
OPUS_RATE = 48_000
OPUS_FRAME = 960  # 20 ms
OPUS_BITRATE = 32_000
RATE = 16_000  # what the turn detector hears
# Bump when the way clips are made changes, so stale cached files are not reused.
CACHE_VERSION = 1


class ClipAudio:
    """Makes (and caches) the 16 kHz audio of clips; loads Kokoro only when a clip needs it."""

    def __init__(self, cache_dir: Path = CACHE_DIR) -> None:
        self.cache_dir = cache_dir
        self._kokoro: KokoroTTS | None = None
        self._parts: dict[tuple[str, Voice], Int16Array] = {}  # a part is in 5 clips
        self.generated = 0

    def audio(self, clip: Clip) -> Int16Array:
        key = hashlib.sha256(
            repr((CACHE_VERSION, clip.parts, clip.voice, clip.pause, TRAILING_SILENCE)).encode()
        ).hexdigest()[:24]
        path = self.cache_dir / f"{key}.wav"
        if path.exists():
            return load_wav(path)[1]
        pieces: list[Int16Array | float] = []
        for i, part in enumerate(clip.parts):
            if i:
                pieces.append(clip.pause or 0.0)
            pieces.append(self._spoken(part, clip.voice))
        pieces.append(TRAILING_SILENCE)
        audio = to_16k(opus_round_trip(join(*pieces, sample_rate=OPUS_RATE)))
        save_wav(path, audio, RATE)
        self.generated += 1
        return audio

    def _spoken(self, text: str, voice: Voice) -> Int16Array:
        """`text` in `voice` at 48 kHz, trimmed."""
        if (text, voice) not in self._parts:
            self._parts[text, voice] = self._synthesize(text, voice)
        return self._parts[text, voice]

    def _synthesize(self, text: str, voice: Voice) -> Int16Array:
        if voice.engine == "espeak":
            return speech(text, voice=voice.name, rate_wpm=voice.rate_wpm)
        if self._kokoro is None:
            paths = ModelPaths(models_dir_from_env())
            self._kokoro = KokoroTTS(paths.kokoro_model, paths.kokoro_voices, "eot-bench")
        samples = self._kokoro.synthesize(text, voice=voice.name).audio
        trimmed = trim_silence(as_int16(samples), KOKORO_SAMPLE_RATE)
        return resample(trimmed, KOKORO_SAMPLE_RATE, OPUS_RATE)


def resample(samples: Int16Array, from_rate: int, to_rate: int) -> Int16Array:
    """libswresample through PyAV (what the server's audio path uses too)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=to_rate)
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = from_rate
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.int16) if out else samples[:0]


def to_16k(samples: Int16Array) -> Int16Array:
    return resample(samples, OPUS_RATE, RATE)


def opus_round_trip(samples: Int16Array) -> Int16Array:
    """Encode 48 kHz mono int16 audio with libopus in 20 ms frames and decode it again."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = OPUS_RATE
    encoder.layout = "mono"
    encoder.format = "s16"
    encoder.bit_rate = OPUS_BITRATE
    encoder.options = {"application": "voip", "frame_duration": "20"}
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate = OPUS_RATE
    decoder.layout = "mono"
    padded = np.pad(samples, (0, -len(samples) % OPUS_FRAME))
    packets = []
    for start in range(0, len(padded), OPUS_FRAME):
        frame = av.AudioFrame.from_ndarray(
            padded[start : start + OPUS_FRAME].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = OPUS_RATE
        frame.pts = start
        frame.time_base = Fraction(1, OPUS_RATE)
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    decoded = [f.to_ndarray().reshape(-1) for p in packets for f in decoder.decode(p)]
    out = np.concatenate(decoded).astype(np.int16)
    return out[: len(samples)]
