"""The accurate pass's child process: lowers its CPU priority, builds the engine, transcribes.

Run as `python -m interview.transcription.child` by AccurateProcess (process.py). Every thread
of the process is put under SCHED_IDLE (nice 19 where the kernel refuses) before numpy or the
model is imported, so all the threads they start inherit it: the child only ever runs on cores
the server's live work leaves idle.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
from typing import Any

from interview.transcription.frames import LENGTH, frame, read_exactly, read_frame


def lower_priority() -> str:
    """Every thread of this process (and those it starts from now on) at SCHED_IDLE, or nice
    19 where that is refused. Returns which ("idle" or "nice")."""
    threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    try:
        for tid in threads:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        return "idle"
    except (AttributeError, OSError):
        for tid in threads:
            os.setpriority(os.PRIO_PROCESS, tid, 19)
        return "nice"


def main() -> None:
    priority = lower_priority()  # first: before any library starts a thread
    # The server stops this process; a Ctrl-C in its terminal is the server's to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    channel = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything printed from here on goes to stderr, not into the channel
    requests = sys.stdin.buffer
    (size,) = LENGTH.unpack(read_exactly(requests, LENGTH.size))
    spec = pickle.loads(read_exactly(requests, size))  # noqa: S301 - written by our parent

    import numpy as np

    engine = spec.build()
    engine.warmup()
    channel.write(frame({"priority": priority, "engine": engine.name, "model_id": engine.model_id}))
    while True:
        try:
            header, pcm = read_frame(requests)
        except EOFError:
            return  # the parent closed the channel, or died
        try:
            audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
            transcript = engine.transcribe_words(audio, str(header["context"]))
            reply: dict[str, Any] = {"words": [[w.word, w.start, w.end] for w in transcript.words]}
        except Exception as exc:  # noqa: BLE001 - the pass's failure: named, never the words
            reply = {"error": f"the engine failed ({type(exc).__name__})"}
        channel.write(frame(reply))


if __name__ == "__main__":
    main()
