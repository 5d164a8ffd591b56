"""What a text-to-speech engine is."""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray


class TextToSpeech(Protocol):
    sample_rate: int

    @property
    def voices(self) -> frozenset[str]:
        """The voice names a plan or session may choose; `synthesize` speaks any other with the
        engine's default voice."""
        ...

    def synthesize(self, text: str, voice: str | None = None) -> NDArray[np.float32]:
        """Mono float32 audio at `sample_rate` for one sentence; blocking."""
        ...

    def warmup(self) -> None: ...
