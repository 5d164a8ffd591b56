"""Plays one interviewer line to the candidate: paced close to real time, yielding the floor when
the candidate speaks over it (pause, then resume or abandon), and reporting what was heard.

Audio is handed to fastrtc a little ahead of playback (LEAD_SECONDS), so the position the
candidate has heard is known at any moment; a pause drops what is queued (`Hush`) and ends with a
short fade instead of a click.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from interview.domain import Interruption
from interview.events import SpeakingState
from interview.voice.floor import Floor, FloorState
from interview.voice.rtc import Hush, Output
from interview.voice.streamed_line import StreamedLine

T = TypeVar("T")

# Audio handed out ahead of playback: enough to ride out a busy event loop. A pause drops what
# is queued, so the lead adds nothing to the time the interviewer takes to stop.
LEAD_SECONDS = 0.3
# The pieces audio is handed out in (fastrtc sends a data-channel message for each).
CHUNK_SECONDS = 0.1
FADE_SECONDS = 0.02  # fade-out at a pause, fade-in at a resume: no click
# A resumed line restarts this much before where it paused, so the word it cut is heard whole.
RESUME_BACK_SECONDS = 0.3
# Longest a piece is held back waiting for the next one to be synthesized.
MAX_HOLD_SECONDS = 3.0
POLL_SECONDS = 0.05  # how often a wait for synthesis looks at the floor


@dataclass
class _Piece:
    text: str
    audio: NDArray[np.float32]


@dataclass
class Playback:
    """What the candidate heard of the line."""

    seconds: float = 0.0  # audio played, pauses not counted
    started_at: float | None = None  # wall-clock of the first audio
    cut: Interruption | None = None
    heard_text: str = ""  # the words up to the cut (the whole line when not cut)
    pieces: list[_Piece] = field(default_factory=list)


class LinePlayer:
    def __init__(
        self,
        line: StreamedLine,
        floor: Floor,
        sample_rate: int,
        on_state: Callable[[SpeakingState], None],
        *,
        reply: bool,
        estimated_seconds: Callable[[str], float] | None = None,
    ) -> None:
        self.line = line
        self.floor = floor
        self.rate = sample_rate
        self.on_state = on_state
        self.reply = reply
        self.estimated_seconds = estimated_seconds
        self.playback = Playback()
        # The answer this line belongs to: a later one ending takes the floor from it.
        self.generation = floor.generation
        self._plays_until = 0.0  # monotonic: when the audio handed out so far has played
        self._cursor = 0  # samples of the line handed out (the line's pieces end to end)
        self._total = 0  # samples of the line known so far
        self._chunk = max(1, int(CHUNK_SECONDS * sample_rate))
        self._fade = max(1, int(FADE_SECONDS * sample_rate))

    async def play(self) -> AsyncIterator[Output]:
        """The line's audio, paced; ends early (with `playback.cut` set) when it is cut."""
        k = 0
        while True:
            piece = await self._unless_cut(self.line.wait_for(k))
            if piece is None:
                break
            text, future = piece
            # Shielded: a line cut short must not cancel audio the cache shares with others.
            audio = await self._unless_cut(asyncio.shield(future))
            if audio is None:
                break
            if k > 0 or not self.reply:
                await self._hold_for_next(k, len(audio) / self.rate)
            self.playback.pieces.append(_Piece(text, audio))
            self._total += len(audio)
            k += 1
            async for output in self._play_known():
                yield output
            if self.playback.cut is not None:
                return
        if self._is_cut():
            self._cut(self._cursor)
            return
        # The tail still queued may be spoken over too.
        while self._plays_until > time.monotonic() and self.playback.cut is None:
            if self._is_cut() or self.floor.state is FloorState.paused:
                async for output in self._yield_floor():
                    yield output
                async for output in self._play_known():
                    yield output
            else:
                await self.floor.changed(within=self._plays_until - time.monotonic())
        if self.playback.cut is None:
            self.playback.heard_text = " ".join(p.text for p in self.playback.pieces)

    # internals

    async def _play_known(self) -> AsyncIterator[Output]:
        """Hand out the known audio from the cursor on, yielding the floor when asked."""
        fade_in = False
        while self._cursor < self._total and self.playback.cut is None:
            if self._is_cut() or self.floor.state is FloorState.paused:
                async for output in self._yield_floor():
                    yield output
                fade_in = True
                continue
            chunk = self._slice(self._cursor, self._chunk)
            if fade_in:
                ramp = min(self._fade, len(chunk))
                chunk[:ramp] *= np.linspace(0.0, 1.0, ramp, dtype=np.float32)
                fade_in = False
            self._cursor += len(chunk)
            yield self._send(chunk)
            ahead = self._plays_until - time.monotonic() - LEAD_SECONDS
            if ahead > 0:
                await self.floor.changed(within=ahead)

    async def _yield_floor(self) -> AsyncIterator[Output]:
        """Stop at once, then wait for the verdict: on a resume the cursor goes back to just
        before where the candidate stopped hearing; otherwise the line is cut there."""
        queued = max(0.0, self._plays_until - time.monotonic())
        heard = max(0, self._cursor - int(queued * self.rate))
        yield Hush()
        # What was queued is dropped; the candidate heard up to `heard`, which fades out.
        self.playback.seconds -= queued
        self._plays_until = time.monotonic()
        tail = self._slice(heard, self._fade)
        if len(tail):
            tail *= np.linspace(1.0, 0.0, len(tail), dtype=np.float32)
            yield self._send(tail)
        if not self._is_cut():
            self.on_state(SpeakingState.paused)
            while self.floor.state is FloorState.paused:
                await self.floor.changed(within=1.0)
        if not self._is_cut() and self.floor.state is FloorState.speaking:
            self.on_state(SpeakingState.resumed)
            self._cursor = max(0, heard - int(RESUME_BACK_SECONDS * self.rate))
            return
        self._cut(heard)

    def _slice(self, start: int, count: int) -> NDArray[np.float32]:
        """Samples [start, start + count) of the line, across its pieces (a copy)."""
        parts: list[NDArray[np.float32]] = []
        offset = 0
        for piece in self.playback.pieces:
            end = offset + len(piece.audio)
            if end > start and offset < start + count:
                parts.append(piece.audio[max(0, start - offset) : start + count - offset])
            offset = end
        if not parts:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(parts).astype(np.float32, copy=True)

    def _cut(self, heard: int) -> None:
        """The line ends here: the words up to sample `heard` are what the candidate heard."""
        playback = self.playback
        playback.cut = self.floor.interruption or Interruption.barge_in
        words: list[str] = []
        offset = 0
        for piece in playback.pieces:
            piece_words = piece.text.split()
            if heard >= offset + len(piece.audio):
                words += piece_words
            elif heard > offset:
                share = (heard - offset) / len(piece.audio)
                words += piece_words[: round(share * len(piece_words))]
            offset += len(piece.audio)
        playback.heard_text = " ".join(words)
        self.on_state(SpeakingState.interrupted)

    def _is_cut(self) -> bool:
        """Whether the floor has been taken from this line: abandoned at any time, or, once the
        line has started, moved on to the candidate."""
        state = self.floor.state
        if state is FloorState.abandoned or self.floor.generation != self.generation:
            return True
        return self.playback.started_at is not None and state not in (
            FloorState.speaking,
            FloorState.paused,
        )

    def _send(self, chunk: NDArray[np.float32]) -> Output:
        now = time.monotonic()
        seconds = len(chunk) / self.rate
        if self.playback.started_at is None:
            self.playback.started_at = time.time()
            self.floor.speaking(reply=self.reply)
            self.on_state(SpeakingState.started)
        self._plays_until = max(self._plays_until, now) + seconds
        self.playback.seconds += seconds
        rms = float(np.sqrt(np.mean(np.square(chunk)))) if len(chunk) else 0.0
        self.floor.sent(self._plays_until, rms)
        return (self.rate, chunk.reshape(1, -1))

    async def _unless_cut(self, awaitable: Awaitable[T]) -> T | None:
        """`awaitable`'s result, or None as soon as the line is cut (it keeps running)."""
        task = asyncio.ensure_future(awaitable)
        while not task.done():
            if self._is_cut():
                return None
            await asyncio.wait([task], timeout=POLL_SECONDS)
        return task.result()

    async def _hold_for_next(self, k: int, piece_seconds: float) -> None:
        """Hold piece k back just long enough that the next is likely ready before it has
        played out: a later start sounds better than a gap mid-line."""
        if self.line.next_ready(k) is not False or self.estimated_seconds is None:
            return
        following = self.line.pieces[k + 1]
        queued = max(self._plays_until - time.monotonic(), 0.0) + piece_seconds
        shortfall = self.estimated_seconds(following[0]) - queued
        if shortfall > 0:
            await asyncio.wait([following[1]], timeout=min(shortfall, MAX_HOLD_SECONDS))
