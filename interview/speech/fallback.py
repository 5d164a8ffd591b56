"""A remote speech engine with the local one behind it: an engine itself, under the same Protocol.

The OpenAI engines are optional and can fail (timeout, 429, 5xx, refused connection, an answer
that is not text or audio, a retired model). A candidate must not wait in silence for that, so
each call gets one attempt at the remote engine and, if it fails, the local engine answers the
same call. After a failure the remote engine is skipped for a short cool-down: a dead API would
otherwise cost every sentence a full timeout before the local engine is used.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import structlog
from numpy.typing import NDArray

from interview.speech.errors import SpeechOutputError
from interview.speech.stt import SpeechToText
from interview.speech.tts import Speech, TextToSpeech

log = structlog.get_logger(__name__)

COOLDOWN_SECONDS = 30.0


def failure_reason(exc: BaseException) -> dict[str, Any]:
    """What a log line may say about a failed remote call: the exception type, the HTTP status
    and our own message for bad output. Never the server's message (a 401 echoes part of the
    key) and never headers."""
    reason: dict[str, Any] = {"error": type(exc).__name__}
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        reason["status"] = status
    if isinstance(exc, SpeechOutputError | TimeoutError):
        reason["detail"] = str(exc)  # written by our engines, never server text
    return reason


class _Primary:
    """Whether the remote engine is worth trying now; shared by the threads calling it."""

    def __init__(
        self, direction: str, engine: str, cooldown: float, clock: Callable[[], float]
    ) -> None:
        self.direction = direction
        self.engine = engine
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self._failing = False
        self.failures = 0

    def available(self) -> bool:
        with self._lock:
            return self._clock() >= self._retry_at

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self._retry_at = self._clock() + self.cooldown
            self._failing = True
            self.failures += 1
        log.warning(
            "speech_engine_fallback",
            direction=self.direction,
            engine=self.engine,
            cooldown_seconds=self.cooldown,
            **failure_reason(exc),
        )

    def succeeded(self) -> None:
        with self._lock:
            recovered, self._failing = self._failing, False
        if recovered:
            log.info("speech_engine_recovered", direction=self.direction, engine=self.engine)

    @property
    def state(self) -> str:
        with self._lock:
            if not self._failing:
                return "ok"
            return "cooling down" if self._clock() < self._retry_at else "retrying"


class FallbackSpeechToText:
    def __init__(
        self,
        primary: SpeechToText,
        fallback: SpeechToText,
        cooldown: float = COOLDOWN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.name = f"{primary.name}, else {fallback.name}"
        self._health = _Primary("stt", primary.name, cooldown, clock)

    @property
    def primary_state(self) -> str:
        return self._health.state

    def transcribe(self, audio: NDArray[np.float32]) -> str:
        if self._health.available():
            try:
                text = self.primary.transcribe(audio)
            except Exception as exc:  # noqa: BLE001 - any remote failure: the local one answers
                self._health.failed(exc)
            else:
                self._health.succeeded()
                return text
        return self.fallback.transcribe(audio)

    def warmup(self) -> None:
        self.primary.warmup()
        # The local engine may have to answer at any moment: pay its first-call cost now.
        self.fallback.warmup()


class FallbackTextToSpeech:
    def __init__(
        self,
        primary: TextToSpeech,
        fallback: TextToSpeech,
        cooldown: float = COOLDOWN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # One output stream carries both engines' audio; a different rate would play at the
        # wrong pitch and speed. OpenAI PCM and Kokoro are both 24 kHz.
        if primary.sample_rate != fallback.sample_rate:
            raise ValueError(
                f"the fallback speaks at {fallback.sample_rate} Hz, the primary at "
                f"{primary.sample_rate} Hz: they must match"
            )
        self.primary = primary
        self.fallback = fallback
        self.name = f"{primary.name}, else {fallback.name}"
        self.sample_rate = primary.sample_rate
        # Kept audio is looked up under the primary's key; a stand-in piece carries the
        # fallback's key (Speech.cache_key), so it is never kept as the primary's voice.
        self.cache_key = primary.cache_key
        self._health = _Primary("tts", primary.name, cooldown, clock)

    @property
    def primary_state(self) -> str:
        return self._health.state

    @property
    def voices(self) -> frozenset[str]:
        # Plans and sessions name the local engine's voices ("af_heart"): the local engine
        # speaks them when it answers, and the primary speaks its own default for them
        # (OPENAI_TTS_VOICE, see OpenAITextToSpeech.voice_for). So the choosable names are the
        # fallback's.
        return self.fallback.voices

    def synthesize(self, text: str, voice: str | None = None) -> Speech:
        if self._health.available():
            try:
                speech = self.primary.synthesize(text, voice)
            except Exception as exc:  # noqa: BLE001 - any remote failure: the local one answers
                self._health.failed(exc)
            else:
                self._health.succeeded()
                return speech
        return self.fallback.synthesize(text, voice)

    def warmup(self) -> None:
        self.primary.warmup()
        self.fallback.warmup()
