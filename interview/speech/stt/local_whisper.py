"""Local Whisper through faster-whisper (CTranslate2), from a model folder made by `make models`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from faster_whisper import WhisperModel
from numpy.typing import NDArray

from interview.speech.stt.base import STT_SAMPLE_RATE


class LocalWhisper:
    name = "whisper"

    def __init__(
        self, model_dir: Path, beam_size: int = 1, cpu_threads: int = 2, workers: int = 1
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

    def transcribe(self, audio: NDArray[np.float32]) -> str:
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

    def warmup(self) -> None:
        rng = np.random.default_rng(0)
        self.transcribe((rng.standard_normal(STT_SAMPLE_RATE) * 0.01).astype(np.float32))
