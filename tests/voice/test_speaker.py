"""The line player with a real floor and a real streamed line (synthesis stood in by tones):
paced output, a pause that hushes and fades, a resume a little before the cut, an abandon that
knows the words heard, and the echo level the ear compares against."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from numpy.typing import NDArray

from interview.domain import Interruption
from interview.events import SpeakingState
from interview.voice.floor import ECHO_WINDOW_SECONDS, Floor, FloorState
from interview.voice.rtc import Hush, Output
from interview.voice.speaker import LEAD_SECONDS, RESUME_BACK_SECONDS, LinePlayer
from interview.voice.streamed_line import StreamedLine

RATE = 24_000
SECONDS_PER_WORD = 0.2


class Tones:
    """Synthesis stood in: each sentence becomes SECONDS_PER_WORD of tone per word, at once."""

    def piece(
        self, sentence: str, voice: str | None, first: bool
    ) -> asyncio.Future[NDArray[np.float32]]:
        seconds = SECONDS_PER_WORD * len(sentence.split())
        t = np.arange(int(seconds * RATE)) / RATE
        future: asyncio.Future[NDArray[np.float32]] = asyncio.get_running_loop().create_future()
        future.set_result((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))
        return future


LINE = "Thank you for that answer. Now tell me about a time you disagreed with a colleague."


class Run:
    """One line played on `floor`, what it yielded and the speaking states it reported."""

    def __init__(self, floor: Floor, reply: bool = True) -> None:
        self.states: list[SpeakingState] = []
        line = StreamedLine.of(Tones(), None, LINE)
        self.player = LinePlayer(line, floor, RATE, self.states.append, reply=reply)
        self.outputs: list[tuple[float, Output]] = []

    async def play(self) -> None:
        async for output in self.player.play():
            self.outputs.append((time.monotonic(), output))

    def frames(self, since: float = 0.0) -> list[np.ndarray]:
        return [o[1].reshape(-1) for at, o in self.outputs if at >= since and isinstance(o, tuple)]

    def sent_seconds(self) -> float:
        return sum(len(f) for f in self.frames()) / RATE


async def started(floor: Floor, run: Run) -> asyncio.Task[None]:
    floor.bind(asyncio.get_running_loop())
    task = asyncio.create_task(run.play())
    while not run.states:  # noqa: ASYNC110 (polled: the player reports through a plain callback)
        await asyncio.sleep(0.01)
    return task


def from_the_audio_thread(action) -> None:
    """The ear calls the floor from fastrtc's audio thread, not the event loop."""
    thread = threading.Thread(target=action)
    thread.start()
    thread.join()


async def test_a_line_plays_whole_paced_close_to_real_time():
    floor = Floor()
    floor.replying()
    run = Run(floor)
    states = run.states
    begun = time.monotonic()
    task = await started(floor, run)
    await asyncio.sleep(0.8)
    # Never more than the lead ahead of playback.
    assert run.sent_seconds() <= (time.monotonic() - begun) + LEAD_SECONDS + 0.15
    await asyncio.wait_for(task, 20)
    playback = run.player.playback
    assert playback.cut is None and playback.heard_text == LINE
    assert playback.seconds == pytest.approx(SECONDS_PER_WORD * len(LINE.split()), abs=0.01)
    assert states == [SpeakingState.started]
    assert floor.state is FloorState.speaking and floor.reply_audio_at is not None


async def test_a_pause_hushes_fades_and_a_resume_goes_back_a_little():
    floor = Floor()
    floor.replying()
    run = Run(floor)
    states = run.states
    task = await started(floor, run)
    await asyncio.sleep(0.75)
    from_the_audio_thread(floor.pause)
    await asyncio.sleep(0.3)
    hushed = [at for at, o in run.outputs if isinstance(o, Hush)]
    assert len(hushed) == 1
    # After the hush, only a short fade went out, ending in silence.
    [fade] = run.frames(since=hushed[0])
    assert len(fade) <= 0.03 * RATE and abs(float(fade[-1])) < 0.02
    assert states == [SpeakingState.started, SpeakingState.paused]
    sent_before = sum(len(f) for f in run.frames()) - len(fade)
    from_the_audio_thread(floor.resume)
    await asyncio.wait_for(task, 20)
    assert states[-1] is SpeakingState.resumed
    playback = run.player.playback
    assert playback.cut is None and playback.heard_text == LINE
    # The resumed audio starts before the sample that was playing at the pause.
    total = SECONDS_PER_WORD * len(LINE.split())
    resent = sum(len(f) for f in run.frames()) - len(fade) - sent_before
    assert resent / RATE > total - sent_before / RATE + RESUME_BACK_SECONDS - 0.05


async def test_an_abandoned_line_knows_the_words_heard_up_to_the_cut():
    floor = Floor()
    floor.replying()
    run = Run(floor)
    states = run.states
    task = await started(floor, run)
    await asyncio.sleep(1.25)
    from_the_audio_thread(floor.pause)
    await asyncio.sleep(0.2)
    from_the_audio_thread(lambda: floor.abandon(Interruption.barge_in))
    await asyncio.wait_for(task, 5)
    playback = run.player.playback
    assert playback.cut is Interruption.barge_in
    assert states == [SpeakingState.started, SpeakingState.paused, SpeakingState.interrupted]
    # The words heard are those of the audio played (0.2 s a word), give or take the one cut;
    # about 1.25 s of it (more if the loop was slow to hear of the pause).
    heard = playback.heard_text.split()
    assert LINE.startswith(playback.heard_text)
    assert abs(len(heard) - playback.seconds / SECONDS_PER_WORD) <= 1, playback.heard_text
    assert 1.0 <= playback.seconds < SECONDS_PER_WORD * len(LINE.split()) - 0.5


async def test_a_reply_withdrawn_before_its_first_audio_plays_nothing():
    floor = Floor()
    floor.replying()
    floor.abandon(Interruption.withdrawn)
    floor.bind(asyncio.get_running_loop())
    run = Run(floor)
    await asyncio.wait_for(run.play(), 5)
    assert run.frames() == []
    assert run.player.playback.cut is Interruption.withdrawn
    assert run.player.playback.heard_text == ""


def test_the_echo_level_is_the_loudest_audio_that_may_still_come_back():
    floor = Floor()
    now = time.monotonic()
    floor.sent(now - ECHO_WINDOW_SECONDS - 0.1, 0.9)  # long played: cannot echo any more
    floor.sent(now - 0.2, 0.3)
    floor.sent(now + 0.1, 0.1)  # still queued
    assert floor.echo_level(now) == pytest.approx(0.3)
    assert floor.echo_level(now + 5) == 0.0


def test_a_replys_end_leaves_the_next_answers_reply_alone():
    floor = Floor()
    floor.replying()
    first = floor.generation
    floor.speaking(reply=True)
    assert floor.pause() and floor.state is FloorState.paused
    assert not floor.pause()
    assert floor.resume() and floor.state is FloorState.speaking
    assert floor.abandon(Interruption.barge_in) and floor.interruption is Interruption.barge_in
    # The candidate's words over it end as an answer before the cut line has settled...
    floor.replying()
    floor.done(first)
    # ...and settling it does not take the floor from that answer's reply.
    assert floor.state is FloorState.replying
    floor.done(floor.generation)
    assert floor.state is FloorState.listening
    assert not floor.abandon(Interruption.barge_in)


async def test_a_line_whose_answer_is_overtaken_is_cut():
    floor = Floor()
    floor.replying()
    run = Run(floor)
    task = await started(floor, run)
    await asyncio.sleep(0.3)
    from_the_audio_thread(floor.replying)  # a later answer ended (no onset was heard)
    await asyncio.wait_for(task, 5)
    assert run.player.playback.cut is not None
