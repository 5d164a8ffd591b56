"""The accurate pass's child process: idle priority, real transcription, killed and restarted
when it runs too long or dies, and its failures named."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from interview.transcription.process import AccurateProcess, PassFailed, PassTimedOut
from tests.transcription.audio import (
    RATE,
    long_noise,
    scheduling_policies,
    spoken,
    tiny_spec,
    words_of,
)

PHRASE = "I moved the billing service to PostgreSQL in two thousand nineteen."


@pytest.fixture
async def process():
    child = AccurateProcess(tiny_spec())
    yield child
    await child.close()


async def test_the_child_runs_every_thread_at_idle_priority_and_transcribes_with_word_times(
    process,
):
    await process.start()
    assert process.pid is not None and process.pid != os.getpid()
    assert process.priority == "idle"
    assert os.sched_getscheduler(process.pid) == os.SCHED_IDLE
    # Every thread, the model's included (they were started after the priority was lowered).
    threads = os.listdir(f"/proc/{process.pid}/task")
    assert len(threads) >= 1
    assert scheduling_policies(process.pid) == {os.SCHED_IDLE}
    assert os.sched_getscheduler(os.getpid()) == os.SCHED_OTHER  # the server is untouched

    transcript = await process.transcribe(spoken(PHRASE), RATE, "", 60)
    later = await process.transcribe(spoken(PHRASE, lead_seconds=3.0), RATE, "", 60)
    assert {"billing", "service"} <= set(words_of(transcript.text))
    assert transcript.text == "".join(w.word for w in transcript.words).strip()
    assert all(w.start <= w.end for w in transcript.words)
    # The same words after 3 s of silence are timed 3 s later.
    assert [w.word for w in later.words] == [w.word for w in transcript.words]
    service = [w.word for w in transcript.words].index(" service")
    assert later.words[service].start - transcript.words[service].start == pytest.approx(
        3.0, abs=0.25
    )
    assert all(w.start <= w.end for w in transcript.words)
    assert scheduling_policies(process.pid) == {os.SCHED_IDLE}


async def test_a_pass_past_its_timeout_kills_the_child_and_the_next_works(process):
    await process.start()
    first_pid = process.pid
    with pytest.raises(PassTimedOut):
        await process.transcribe(long_noise(25.0), RATE, "", timeout=0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(first_pid, 0)  # killed, and reaped
    transcript = await process.transcribe(spoken("Kubernetes clusters."), RATE, "", 60)
    assert process.pid != first_pid
    assert "clusters" in words_of(transcript.text)


async def test_a_child_killed_mid_pass_fails_that_pass_and_the_next_works(process):
    await process.start()
    first_pid = process.pid
    assert first_pid is not None
    running = asyncio.create_task(process.transcribe(long_noise(25.0), RATE, "", 60))
    await asyncio.sleep(0.3)
    os.kill(first_pid, signal.SIGKILL)
    with pytest.raises(PassFailed, match="ended"):
        await running
    transcript = await process.transcribe(spoken("The service was too slow."), RATE, "", 60)
    assert process.pid != first_pid
    assert "slow" in words_of(transcript.text)


async def test_an_engine_error_fails_the_pass_and_the_child_lives_on(process):
    await process.start()
    pid = process.pid
    with pytest.raises(PassFailed, match="the engine failed"):
        await process.transcribe(b"\x00\x01\x02", RATE, "", 60)  # half a sample
    assert process.pid == pid
    with pytest.raises(PassFailed, match="sample rate"):
        await process.transcribe(spoken("Hello."), 48_000, "", 60)
    transcript = await process.transcribe(spoken("Hello there."), RATE, "", 60)
    assert process.pid == pid
    assert "hello" in words_of(transcript.text)


async def test_close_ends_the_child(process):
    await process.start()
    pid = process.pid
    assert pid is not None
    await process.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def process_state(pid: int) -> str:
    """The kernel's state letter of a process: T while stopped."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


async def settled_state(pid: int, stopped: bool) -> str:
    """The state once a stop or a continue has been delivered (signals arrive a moment later)."""
    for _ in range(100):
        state = process_state(pid)
        if (state == "T") == stopped:
            return state
        await asyncio.sleep(0.01)
    return process_state(pid)


async def test_a_held_child_is_stopped_and_its_held_time_does_not_count(process):
    # Live work holds the pass: the child takes no CPU until it is let go, and a pass held for
    # longer than its timeout still finishes once released.
    await process.start()
    pid = process.pid
    process.hold(True)
    assert await settled_state(pid, stopped=True) == "T"
    passing = asyncio.ensure_future(process.transcribe(spoken(PHRASE), RATE, "", timeout=1.5))
    await asyncio.sleep(2.5)
    assert not passing.done() and process_state(pid) == "T"
    process.hold(False)
    assert await settled_state(pid, stopped=False) in "RS"
    transcript = await passing
    assert "billing" in words_of(transcript.text) and process.pid == pid
    assert process.held_seconds() >= 2.5


async def test_a_held_pass_still_times_out_on_its_own_running_time(process):
    await process.start()
    process.hold(True)
    process.hold(False)
    with pytest.raises(PassTimedOut):
        await process.transcribe(long_noise(25.0), RATE, "", timeout=0.2)
