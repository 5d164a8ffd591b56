"""Sentence audio made once and reused: the interviewer's lines repeat across interviews.

A scripted interviewer's next line is known while the candidate is still answering, so it is
synthesized ahead (prefetch) and the reply starts without waiting for text-to-speech. Pieces of
the plans' own lines are also kept on disk, keyed by model, voice and text, so a restart or a
second instance does not synthesize them again: on two cores, speech synthesis is the scarce
resource. Any other line (a language model's, which may repeat what the candidate said) is kept
in memory only, so no candidate's words outlive the process in the cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from interview.speech.priority_worker import LATER, NOW, SOON, PriorityWorker
from interview.speech.sentences import split_sentences
from interview.speech.tts import TextToSpeech

Key = tuple[str | None, str]
SPOKEN_CHARS_PER_SECOND = 15.0


class SpeechCache:
    def __init__(
        self,
        tts: TextToSpeech,
        worker: PriorityWorker,
        max_entries: int = 512,
        directory: Path | None = None,
        keep_on_disk: Callable[[str], bool] | None = None,
    ) -> None:
        self.tts = tts
        self._worker = worker
        self._directory = directory
        # Which sentences may be written to `directory` (None: every one).
        self._keep_on_disk = keep_on_disk
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        self._max_entries = max_entries
        self._entries: OrderedDict[Key, Future[NDArray[np.float32]]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        # Seconds of synthesis per second of audio, kept current: it tells the pipeline how
        # long the next piece will take, so it can avoid a gap in the interviewer's voice.
        self.real_time_factor = 0.7

    @property
    def sample_rate(self) -> int:
        return self.tts.sample_rate

    def _future(
        self, sentence: str, voice: str | None, priority: int
    ) -> Future[NDArray[np.float32]]:
        key = (voice, sentence)
        future = self._entries.get(key)
        failed = (
            future is not None
            and future.done()
            and (future.cancelled() or future.exception() is not None)
        )
        if future is not None and not failed:
            self._entries.move_to_end(key)
            self._worker.promote(future, priority)
            return future
        stored = self._load(self.tts.cache_key, sentence, voice)
        if stored is not None:
            future = Future()
            future.set_result(stored)
        else:
            future = self._worker.submit(priority, self._synthesize, sentence, voice)
        self._entries[key] = future
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return future

    def _path(self, engine_key: str, sentence: str, voice: str | None) -> Path | None:
        if self._directory is None:
            return None
        # Each engine names its own audio: OpenAI's is never served as Kokoro's.
        key = f"{engine_key}|{voice}|{sentence}"
        return self._directory / f"{hashlib.sha256(key.encode()).hexdigest()}.npy"

    def _load(
        self, engine_key: str, sentence: str, voice: str | None
    ) -> NDArray[np.float32] | None:
        path = self._path(engine_key, sentence, voice)
        if path is None or not path.exists():
            return None
        try:
            # np.load is typed Any; this cache only ever saves float32 audio (_synthesize).
            audio: NDArray[np.float32] = np.load(path, allow_pickle=False)
            return audio
        except (OSError, ValueError):
            return None  # a damaged entry is made again

    def _synthesize(self, sentence: str, voice: str | None) -> NDArray[np.float32]:
        started = time.perf_counter()
        speech = self.tts.synthesize(sentence, voice)
        audio = speech.audio
        seconds = len(audio) / self.sample_rate
        if seconds > 0.3:
            factor = (time.perf_counter() - started) / seconds
            self.real_time_factor = 0.7 * self.real_time_factor + 0.3 * factor
        # Kept under the key of the engine that made it: audio the local engine made while the
        # remote one failed must not replace the remote voice for this line for good.
        path = self._path(speech.cache_key, sentence, voice)
        if path is not None and (self._keep_on_disk is None or self._keep_on_disk(sentence)):
            partial = path.with_suffix(f".{threading.get_ident()}.partial")
            with partial.open("wb") as out:
                np.save(out, audio, allow_pickle=False)
            partial.replace(path)  # atomic: readers never see half a file
        return audio

    def estimated_seconds(self, sentence: str) -> float:
        """How long synthesizing a sentence is likely to take (speech runs ~15 chars/s)."""
        return self.real_time_factor * len(sentence) / SPOKEN_CHARS_PER_SECOND

    def prefetch(self, text: str, voice: str | None) -> None:
        for sentence in split_sentences(text):
            self._future(sentence, voice, LATER)

    def sentences(
        self, text: str, voice: str | None
    ) -> list[tuple[str, asyncio.Future[NDArray[np.float32]]]]:
        """Each sentence with its audio future, all started now so later ones synthesize while
        earlier ones play."""
        return [
            (sentence, self.piece(sentence, voice, first=i == 0))
            for i, sentence in enumerate(split_sentences(text))
        ]

    def piece(
        self, sentence: str, voice: str | None, first: bool
    ) -> asyncio.Future[NDArray[np.float32]]:
        """One piece's audio, started now: the first of a line ahead of everything else."""
        future = self._future(sentence, voice, NOW if first else SOON)
        if future.done():
            self.hits += 1
        else:
            self.misses += 1
        return asyncio.wrap_future(future)


def sentences_of(lines: Iterable[str]) -> frozenset[str]:
    """The pieces these lines are spoken in (a line cut as `sentences` cuts it)."""
    return frozenset(piece for line in lines for piece in split_sentences(line))
