"""An interviewer line that arrives in pieces, cut into speakable pieces as it grows.

The interviewer hands over its words as the language model writes them. Each sentence is sent
to synthesis as soon as it is complete, so the first is spoken while the rest is still being
generated; the speaker waits here for the next piece or for the end of the line.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import numpy as np
import structlog
from numpy.typing import NDArray

from interview.interviewer.base import LINE_COMPLETE
from interview.speech.sentences import MIN_CHARS, SENTENCE_END, split_sentences

log = structlog.get_logger(__name__)

Piece = tuple[str, "asyncio.Future[NDArray[np.float32]]"]


class Synthesis(Protocol):
    """What a line needs of the speech cache (interview.speech.cache.SpeechCache)."""

    def piece(
        self, sentence: str, voice: str | None, first: bool
    ) -> asyncio.Future[NDArray[np.float32]]: ...


class StreamedLine:
    def __init__(self, speech: Synthesis, voice: str | None) -> None:
        self.speech = speech
        self.voice = voice
        self.pieces: list[Piece] = []
        self.done = False
        self.first_text_at: float | None = None
        self._pending = ""  # received but not yet cut into pieces
        self._changed = asyncio.Event()

    @classmethod
    def of(cls, speech: Synthesis, voice: str | None, text: str) -> StreamedLine:
        """A line known whole (the greeting, a reconnect's repeat)."""
        line = cls(speech, voice)
        line.finish(text)
        return line

    def add(self, text: str) -> None:
        if text == LINE_COMPLETE:
            # No more words: the last sentence needs no following one to count as complete.
            for piece in split_sentences(self._pending):
                self._queue(piece)
            self._pending = ""
            return
        if self.first_text_at is None and text.strip():
            self.first_text_at = time.time()
        self._pending += text
        # The last part may be a sentence still being written; the others are complete.
        *complete, self._pending = SENTENCE_END.split(self._pending)
        ready = " ".join(s.strip() for s in complete if s.strip())
        if ready and len(ready) < MIN_CHARS:
            # "Thanks." alone is too short a piece: it rides with the next sentence.
            self._pending = f"{ready} {self._pending}"
            return
        for piece in split_sentences(ready):
            self._queue(piece)

    def finish(self, text: str) -> None:
        """The whole line is known: speak what has not been queued yet."""
        if self.done:
            return
        queued = _words(" ".join(piece for piece, _ in self.pieces))
        final = _words(text)
        if final.startswith(queued):
            rest = final[len(queued) :]
        else:
            # The interviewer promises its final line starts with what it streamed; if it did
            # not, saying something else now would contradict what the candidate heard.
            log.warning("streamed_line_diverged", queued=len(self.pieces))
            rest = ""
        if rest and self.first_text_at is None:
            self.first_text_at = time.time()
        for piece in split_sentences(rest):
            self._queue(piece)
        self.done = True
        self._changed.set()

    def abort(self) -> None:
        self.done = True
        self._changed.set()

    async def wait_for(self, k: int) -> Piece | None:
        """Piece k once it exists, or None when the line ended before it."""
        while k >= len(self.pieces) and not self.done:
            self._changed.clear()
            await self._changed.wait()
        return self.pieces[k] if k < len(self.pieces) else None

    def next_ready(self, k: int) -> bool | None:
        """Whether piece k+1's audio is ready; None when it is not known yet."""
        if k + 1 < len(self.pieces):
            return self.pieces[k + 1][1].done()
        return None

    def _queue(self, piece: str) -> None:
        self.pieces.append((piece, self.speech.piece(piece, self.voice, first=not self.pieces)))
        self._changed.set()


def _words(text: str) -> str:
    return " ".join(text.split())
