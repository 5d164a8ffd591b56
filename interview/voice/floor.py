"""Who has the floor on one voice connection: shared by the ear (fastrtc's audio thread), which
hears the candidate start over the interviewer, and the speaker (the event loop), which pauses,
resumes or abandons the line it is playing.

The floor also remembers how loud the interviewer's own audio was as it played, so the ear can
tell the candidate's voice from the echo of the interviewer's (a Geigel-style double-talk test:
near-end speech must be louder than the loudest far-end audio of the last moments, scaled by the
worst echo path expected).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from enum import StrEnum

from interview.domain import Interruption


class FloorState(StrEnum):
    listening = "listening"  # the candidate's turn: nothing is being said to them
    replying = "replying"  # an answer ended; the reply is being made, not yet heard
    speaking = "speaking"  # the interviewer's line is playing
    paused = "paused"  # the candidate started over the line: it holds, waiting for a verdict
    abandoned = "abandoned"  # the line is cut for good


# How far back the interviewer's audio may still come back as echo: the browser's playout
# buffer, the network both ways and the microphone's capture buffer.
ECHO_WINDOW_SECONDS = 0.6


class Floor:
    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._state = FloorState.listening
        # Counts the answers ended: a reply belongs to one, and its end must not reset the floor
        # for the next (which may have ended while the reply was still going).
        self.generation = 0
        self.interruption: Interruption | None = None
        # Monotonic time the current reply's first audio played, None before it does.
        self.reply_audio_at: float | None = None
        # (monotonic time it plays until, RMS) of each piece of the interviewer's audio sent.
        self._played: deque[tuple[float, float]] = deque(maxlen=256)
        self._changed: asyncio.Event | None = None

    @property
    def state(self) -> FloorState:
        return self._state

    # the speaker's side (event loop)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def replying(self) -> None:
        """An answer ended: its reply is on the way (a candidate who goes on now was not done)."""
        with self._lock:
            self.generation += 1
            self._state = FloorState.replying
            self.interruption = None
            self.reply_audio_at = None
        self._wake()

    def speaking(self, *, reply: bool) -> None:
        """A line starts playing: a `reply` to an answer (which the candidate may yet turn out
        not to have finished), or a line of the interviewer's own (greeting, check-in)."""
        with self._lock:
            if self._state in (FloorState.abandoned, FloorState.paused):
                return
            self._state = FloorState.speaking
            if reply and self.reply_audio_at is None:
                self.reply_audio_at = time.monotonic()
        self._wake()

    def sent(self, plays_until: float, rms: float) -> None:
        """A piece of the interviewer's audio that plays until `plays_until` (monotonic)."""
        with self._lock:
            self._played.append((plays_until, rms))

    def done(self, generation: int) -> None:
        """What began in `generation` (a reply, the greeting, a check-in) has played out or was
        settled: the candidate's turn, unless a later answer has ended since (its reply is
        being made)."""
        with self._lock:
            if self.generation != generation:
                return
            self._state = FloorState.listening
            self.reply_audio_at = None
        self._wake()

    async def changed(self, within: float) -> None:
        """Wait until the state changes, at most `within` seconds."""
        if self._changed is None:
            self._changed = asyncio.Event()
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), within)
        except TimeoutError:
            return
        finally:
            event.clear()

    # the ear's side (audio thread)

    def pause(self) -> bool:
        """The candidate started speaking over the line; False when no line was playing."""
        with self._lock:
            if self._state is not FloorState.speaking:
                return False
            self._state = FloorState.paused
        self._wake()
        return True

    def resume(self) -> bool:
        """It was a backchannel or a noise: the line goes on where it paused."""
        with self._lock:
            if self._state is not FloorState.paused:
                return False
            self._state = FloorState.speaking
        self._wake()
        return True

    def abandon(self, interruption: Interruption) -> bool:
        """The line is cut for good; False when there was none to cut."""
        with self._lock:
            if self._state not in (FloorState.speaking, FloorState.paused, FloorState.replying):
                return False
            self._state = FloorState.abandoned
            self.interruption = interruption
        self._wake()
        return True

    def echo_level(self, now: float | None = None) -> float:
        """The loudest RMS of the interviewer's audio that may still echo back now."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return max(
                (rms for until, rms in self._played if until >= now - ECHO_WINDOW_SECONDS),
                default=0.0,
            )

    # internals

    def _wake(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._set_changed)

    def _set_changed(self) -> None:
        if self._changed is None:
            self._changed = asyncio.Event()
        self._changed.set()
