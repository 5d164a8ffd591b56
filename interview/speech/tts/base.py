"""What a text-to-speech engine is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Speech:
    """One sentence's audio, and the identity of what made it (see TextToSpeech.cache_key)."""

    audio: NDArray[np.float32]
    cache_key: str


class TextToSpeech(Protocol):
    @property
    def name(self) -> str:
        """Which engine this is, for health and logs ("kokoro", "openai", ...)."""
        ...

    @property
    def sample_rate(self) -> int: ...

    @property
    def voices(self) -> frozenset[str]:
        """The voice names a plan or session may choose; `synthesize` speaks any other with the
        engine's default voice."""
        ...

    @property
    def cache_key(self) -> str:
        """What, besides the voice and the text, decides this engine's audio (model, server,
        speed): kept audio is reused only under the same key."""
        ...

    def synthesize(self, text: str, voice: str | None = None) -> Speech:
        """Mono float32 audio at `sample_rate` for one sentence; blocking."""
        ...

    def warmup(self) -> None: ...
