"""Sentence audio made once and reused: the interviewer's lines repeat across interviews.

A scripted interviewer's next line is known while the candidate is still answering, so it is
synthesized ahead (prefetch) and the reply starts without waiting for text-to-speech.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from concurrent.futures import Future

import numpy as np
from numpy.typing import NDArray

from interview.speech.sentences import split_sentences
from interview.speech.tts import TextToSpeech
from interview.voice.priority_worker import LATER, NOW, SOON, PriorityWorker

Key = tuple[str | None, str]


class SpeechCache:
    def __init__(self, tts: TextToSpeech, worker: PriorityWorker, max_entries: int = 512) -> None:
        self.tts = tts
        self._worker = worker
        self._max_entries = max_entries
        self._entries: OrderedDict[Key, Future[NDArray[np.float32]]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def sample_rate(self) -> int:
        return self.tts.sample_rate

    def _future(
        self, sentence: str, voice: str | None, priority: int
    ) -> Future[NDArray[np.float32]]:
        key = (voice, sentence)
        future = self._entries.get(key)
        if future is not None and not (future.done() and future.exception() is not None):
            self._entries.move_to_end(key)
            self._worker.promote(future, priority)
            return future
        future = self._worker.submit(priority, self.tts.synthesize, sentence, voice)
        self._entries[key] = future
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return future

    def prefetch(self, text: str, voice: str | None) -> None:
        for sentence in split_sentences(text):
            self._future(sentence, voice, LATER)

    def sentences(self, text: str, voice: str | None) -> list[asyncio.Future[NDArray[np.float32]]]:
        """Audio futures for each sentence, all started now so later ones synthesize while
        earlier ones play."""
        futures = []
        for i, sentence in enumerate(split_sentences(text)):
            future = self._future(sentence, voice, NOW if i == 0 else SOON)
            if future.done():
                self.hits += 1
            else:
                self.misses += 1
            futures.append(asyncio.wrap_future(future))
        return futures
