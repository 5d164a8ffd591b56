"""Local Whisper through faster-whisper (CTranslate2), from a model folder made by `make models`.

Short answers take a short window: faster-whisper always encodes 30 s of audio (315 ms of
tiny.en's encoder on 2 cores), but the CTranslate2 encoder accepts fewer mel frames. Audio up to
`SHORT_WINDOW_LIMIT` seconds is encoded with a second of padding, and its encoding is laid over
the encoding of 30 s of silence (made once at load) before one greedy decode: the decoder then
sees the long silence after the speech that it was trained on. Decoding the short encoding alone
ended early (last word dropped) or looped; with the silence behind it, it did neither on the
end-of-turn clips (benchmarks/README.md, "STT: the short window"). The result is still checked,
and a runaway, poor or empty decode goes through the normal 30 s pass. Public API only:
`WhisperModel.feature_extractor`, `.hf_tokenizer`, `.model.encode` and `.model.generate`.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from numpy.typing import NDArray

from interview.speech.stt.base import STT_SAMPLE_RATE

FRAMES_PER_SECOND = 100  # Whisper's mel hop: 10 ms
FULL_WINDOW_FRAMES = 3000  # the 30 s every model was trained on
# Longer audio takes the normal path: past ~20 s the saving shrinks and long decodes drift.
SHORT_WINDOW_LIMIT = 20.0
# Silence after the speech, in whole seconds: Whisper needs some to end the last word and emit
# end-of-text (with none it tends to repeat itself); whole seconds keep the encoder's shapes few.
SHORT_WINDOW_PADDING = 1.0
# Guards on the short decode (any failing one: the 30 s pass decides instead).
MAX_TOKENS_PER_SECOND = 6.0  # fast speech is ~4 tokens/s; a loop runs past the budget
MIN_TOKENS = 12  # the token budget of very short audio ("Yes.")
# The decode may run this far past the budget before it is stopped: with max_length at the
# budget, CTranslate2's greedy decode ended answers early more often (measured on TUNE).
DECODE_SLACK = 20
# faster-whisper's own thresholds: a poor score is a failed decode, unless the model also
# says there was no speech (then the 30 s pass would return nothing too).
MIN_AVG_LOGPROB = -1.0
NO_SPEECH_PROBABILITY = 0.6


class LocalWhisper:
    name = "whisper"

    def __init__(
        self,
        model_dir: Path,
        beam_size: int = 1,
        cpu_threads: int = 2,
        workers: int = 1,
        short_window: bool = True,
    ) -> None:
        # A local folder: faster-whisper never looks at a model hub for it. `workers` lets that
        # many transcriptions run at once (several candidates finishing answers together).
        self._model = WhisperModel(
            str(model_dir),
            device="cpu",
            compute_type="int8",
            cpu_threads=cpu_threads,
            num_workers=workers,
        )
        self.workers = workers
        self._english_only = model_dir.name.endswith(".en")
        self.beam_size = beam_size
        self.short_window = short_window
        tokenizer = self._model.hf_tokenizer
        special = ["<|startoftranscript|>"]
        if not self._english_only:
            special += ["<|en|>", "<|transcribe|>"]
        special.append("<|notimestamps|>")
        self._prompt = [tokenizer.token_to_id(token) for token in special]
        self._end_of_text = tokenizer.token_to_id("<|endoftext|>")
        self._silence: NDArray[np.float32] | None = None  # encoded 30 s of silence
        # How many short decodes fell back to the 30 s pass (for benchmarks and logs).
        self.short_calls = 0
        self.fallbacks = 0

    def transcribe(self, audio: NDArray[np.float32]) -> str:
        seconds = len(audio) / STT_SAMPLE_RATE
        if self.short_window and 0 < seconds <= SHORT_WINDOW_LIMIT:
            self.short_calls += 1
            text = self.transcribe_short(audio)
            if text is not None:
                return text
            self.fallbacks += 1
        return self.transcribe_full(audio)

    def transcribe_full(self, audio: NDArray[np.float32]) -> str:
        """faster-whisper's own pass over a 30 s window."""
        segments, _info = self._model.transcribe(
            audio,
            language=None if self._english_only else "en",
            beam_size=self.beam_size,
            # One decoding pass: Whisper's fallback retries at higher temperatures turned one
            # unclear answer into 13 s of transcription while other candidates queued behind.
            temperature=0.0,
            # Each answer stands alone; carrying text over invites repeated hallucinations.
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,  # the pipeline's VAD already cut the answer out
        )
        return " ".join(segment.text.strip() for segment in segments).strip()

    def transcribe_short(self, audio: NDArray[np.float32]) -> str | None:
        """The text from a window just longer than the audio, or None when the decode looks
        degenerate (a loop, too many tokens for the time, a poor score, nothing)."""
        seconds = len(audio) / STT_SAMPLE_RATE
        frames = min(
            FULL_WINDOW_FRAMES,
            FRAMES_PER_SECOND * math.ceil(seconds + SHORT_WINDOW_PADDING),
        )
        features = self._model.feature_extractor(audio.astype(np.float32, copy=False))
        features = features[:, :frames]
        # Zeros past the audio, as faster-whisper pads its 30 s window.
        features = np.pad(features, ((0, 0), (0, frames - features.shape[1])))
        encoded = self._encode(features)
        window = self._encoded_silence().copy()
        window[:, : encoded.shape[1]] = encoded
        budget = max(MIN_TOKENS, math.ceil(seconds * MAX_TOKENS_PER_SECOND))
        result = self._model.model.generate(
            ctranslate2.StorageView.from_array(window),
            [self._prompt],
            beam_size=1,
            max_length=len(self._prompt) + 2 * budget + DECODE_SLACK,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
        )[0]
        # CTranslate2's score is the summed log-probability divided by the length (penalty 1).
        poor = result.scores[0] < MIN_AVG_LOGPROB
        if poor and result.no_speech_prob > NO_SPEECH_PROBABILITY:
            return ""
        tokens = [t for t in result.sequences_ids[0] if t < self._end_of_text]
        if len(tokens) > budget:
            return None  # a loop, or far more words than the time allows
        text = str(self._model.hf_tokenizer.decode(tokens)).strip()
        if poor or not text or _repeats(text):
            return None
        return text

    def _encode(self, features: NDArray[np.float32]) -> NDArray[np.float32]:
        """The encoder's output for mel frames [n_mels, frames]: [1, frames / 2, width]."""
        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(features[None]))
        return np.asarray(self._model.model.encode(view, to_cpu=True), dtype=np.float32)

    def _encoded_silence(self) -> NDArray[np.float32]:
        if self._silence is None:
            mels = self._model.feature_extractor.mel_filters.shape[0]
            self._silence = self._encode(np.zeros((mels, FULL_WINDOW_FRAMES), np.float32))
        return self._silence

    def warmup(self) -> None:
        rng = np.random.default_rng(0)
        noise = (rng.standard_normal(STT_SAMPLE_RATE) * 0.01).astype(np.float32)
        self.transcribe_full(noise)
        if self.short_window:
            self.transcribe_short(noise)


def _repeats(text: str) -> bool:
    """A decoding loop: some three words twice in the same order. An answer may repeat itself
    that way too; then the 30 s pass costs what it always did."""
    words = [w.strip(".,!?;:").lower() for w in text.split()]
    grams = Counter(tuple(words[i : i + 3]) for i in range(len(words) - 2))
    return bool(grams) and max(grams.values()) > 1
