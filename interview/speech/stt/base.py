"""What a speech-to-text engine is."""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

STT_SAMPLE_RATE = 16_000


class SpeechToText(Protocol):
    @property
    def name(self) -> str:
        """Which engine this is, for health and logs ("whisper", "openai", ...)."""
        ...

    def transcribe(self, audio: NDArray[np.float32]) -> str:
        """Text of 16 kHz mono float32 audio; blocking, so callers run it off the event loop."""
        ...

    def warmup(self) -> None: ...
