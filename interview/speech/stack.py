"""The speech engines of this process: loaded once in the background, with the workers they run
on and the cache of what they said.

Loading takes seconds (model files verified, engines built and warmed), so it runs after start-up
while the REST API already answers; until it is done, `state` says "loading" and the voice
routes refuse with 503. With VOICE_ENABLED=false nothing is loaded at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from typing import TYPE_CHECKING

import structlog

from interview.config import Settings
from interview.speech.activity import LiveActivity, LiveExecutor
from interview.speech.cache import SpeechCache
from interview.speech.errors import UnknownVoice
from interview.speech.priority_worker import PriorityWorker
from interview.speech.tts.kokoro import KokoroTTS

if TYPE_CHECKING:
    from interview.speech.engines import SpeechEngines

log = structlog.get_logger(__name__)


class LoadState(StrEnum):
    disabled = "disabled"
    loading = "loading"
    ready = "ready"
    failed = "failed"


class SpeechNotLoaded(RuntimeError):
    """The engines were asked for before they loaded (or they failed to load)."""


class SpeechStack:
    def __init__(
        self, settings: Settings, keep_on_disk: Callable[[str], bool] | None = None
    ) -> None:
        self.settings = settings
        # Which sentences the speech cache may keep on disk (SpeechCache); None: all.
        self.keep_on_disk = keep_on_disk
        self.state = LoadState.loading if settings.voice_enabled else LoadState.disabled
        self.detail = "loading models" if settings.voice_enabled else "VOICE_ENABLED is false"
        self._engines: SpeechEngines | None = None
        self._cache: SpeechCache | None = None
        # Speech-to-text runs as many at once as the model has workers; synthesis, one at a
        # time in order of urgency (it uses every core it is given).
        # Both count as live work: the accurate pass stops while any runs (activity.py).
        self.activity = LiveActivity()
        self.compute = LiveExecutor(self.activity, settings.stt_workers, thread_name_prefix="stt")
        # The end-of-turn model judges each pause beside the transcription of its last stretch,
        # not behind it: the decision waits for both.
        self.judging = ThreadPoolExecutor(1, thread_name_prefix="turn")
        self._tts_worker: PriorityWorker | None = None

    async def load(self) -> None:
        """Load and warm the engines; a failure is kept in `state` and `detail` (text
        interviews keep working without voice)."""
        if self.state is not LoadState.loading:
            return
        started = time.perf_counter()
        try:
            await asyncio.to_thread(self._load_blocking)
        except Exception as exc:  # health reports it
            self.state, self.detail = LoadState.failed, str(exc)
            log.exception("voice_load_failed")
            return
        self.state, self.detail = LoadState.ready, "models loaded and warm"
        log.info("speech_ready", load_seconds=round(time.perf_counter() - started, 2))

    def _load_blocking(self) -> None:
        # Imported here: the engines' libraries (onnxruntime, CTranslate2) take seconds to load
        # and are never needed while voice is off.
        from interview.speech.engines import build_engines

        engines = build_engines(self.settings)
        engines.warmup()
        self._tts_worker = PriorityWorker("tts", activity=self.activity)
        self._cache = SpeechCache(
            engines.tts,
            self._tts_worker,
            directory=self.settings.speech_cache_dir,
            keep_on_disk=self.keep_on_disk,
        )
        self._engines = engines
        log.info(
            "speech_engines", stt=engines.stt.name, tts=engines.tts.name, turn=engines.turn.name
        )

    @property
    def engines(self) -> SpeechEngines:
        if self._engines is None:
            raise SpeechNotLoaded(self.detail)
        return self._engines

    @property
    def cache(self) -> SpeechCache:
        if self._cache is None:
            raise SpeechNotLoaded(self.detail)
        return self._cache

    def voices(self) -> list[str] | None:
        """The voices a session may choose, sorted; None while no engine is loaded (disabled,
        loading or failed), when there is nothing to check a voice against."""
        if self.state is not LoadState.ready or self._engines is None:
            return None
        return sorted(self._engines.tts.voices)

    def check_voice(self, voice: str) -> None:
        """UnknownVoice unless `voice` is named like a voice and, once the engines are loaded,
        is one of theirs."""
        known = self.voices()
        if not KokoroTTS.names_a_voice(voice) or (known is not None and voice not in known):
            raise UnknownVoice(voice, known)

    def shutdown(self) -> None:
        self.compute.shutdown(wait=False, cancel_futures=True)
        self.judging.shutdown(wait=False, cancel_futures=True)
        if self._tts_worker is not None:
            self._tts_worker.shutdown()
