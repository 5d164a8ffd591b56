"""What an end-of-turn model is."""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

TURN_SAMPLE_RATE = 16_000


class TurnModel(Protocol):
    @property
    def name(self) -> str:
        """Which model this is, for health and logs ("smart-turn-v3.2", ...)."""
        ...

    @property
    def cache_key(self) -> str:
        """What decides this model's answers (model file, settings): a probability is comparable
        with another, or a threshold tuned on one carries over, only under the same key."""
        ...

    def probability(self, audio: NDArray[np.float32]) -> float:
        """P(the speaker has finished their turn) from the turn so far: 16 kHz mono float32 in
        [-1, 1], ending now. Blocking, so callers run it off the event loop."""
        ...

    def warmup(self) -> None: ...
