"""The accurate pass's engine in a child process of its own, at the lowest CPU priority.

The child (a fresh interpreter: `python -m interview.transcription.child`, never a fork of
the server with its threads) first puts itself under SCHED_IDLE (nice 19 where the kernel
refuses), so every thread it starts after that, the model's included, runs only on cores the
live pass, speech synthesis and audio leave free; then it builds and warms the engine
(`spec.build()`) and answers requests one at a time. A pass that runs too long, or a child that
dies, is ended with SIGKILL and a fresh child started: the server never waits on a stuck model.

Over the child's stdin/stdout: the spec once (pickled: the parent is trusted), then frames of
[4-byte length][JSON header][4-byte length][payload]. Stray prints of the child's libraries go
to stderr, never into the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interview.speech.stt.accurate import TimedTranscript, TimedWord
from interview.transcription.frames import LENGTH, frame

if TYPE_CHECKING:
    from interview.speech.stt.accurate import AccurateSpec

# Building and warming the engine, at idle priority on a busy machine, may take this long.
READY_TIMEOUT_SECONDS = 300.0
# A child asked to stop (stdin closed) is killed after this.
CLOSE_SECONDS = 5.0
SAMPLE_RATE = 16_000  # what the engine takes (the stored stretches are 16 kHz)

_PROJECT_DIR = Path(__file__).resolve().parents[2]


class PassTimedOut(Exception):
    """The pass ran past its time; the child was killed (and a new one started)."""


class PassFailed(Exception):
    """The pass failed: the engine raised, or the child died or could not start."""


class AccurateProcess:
    """The parent's handle on one child: one pass at a time."""

    def __init__(self, spec: AccurateSpec, ready_timeout: float = READY_TIMEOUT_SECONDS) -> None:
        self.spec = spec
        self.ready_timeout = ready_timeout
        self._child: asyncio.subprocess.Process | None = None
        self._ready = False
        self._lock = asyncio.Lock()
        # From the child's hello: its scheduling ("idle" or "nice"), the engine's identity.
        self.priority: str | None = None
        self.engine_name: str | None = None
        self.model_id: str | None = None
        # Stopped (SIGSTOP) while live work runs; the time stopped does not count against a
        # pass's timeout. Set from the live workers' threads.
        self._hold = threading.Lock()
        self._held_since: float | None = None
        self._held_total = 0.0

    @property
    def pid(self) -> int | None:
        """The child's pid (None before the first start)."""
        return None if self._child is None else self._child.pid

    def hold(self, held: bool) -> None:
        """Stop the child (True) or let it go on (False): while it is stopped it takes no CPU
        at all, not even an idle hyperthread's share. A child still loading is left alone."""
        with self._hold:
            if held == (self._held_since is not None):
                return
            if held:
                self._held_since = time.monotonic()
            else:
                assert self._held_since is not None
                self._held_total += time.monotonic() - self._held_since
                self._held_since = None
            child = self._child
            if child is not None and child.returncode is None and (self._ready or not held):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGSTOP if held else signal.SIGCONT)

    def held_seconds(self) -> float:
        """How long the child has been stopped, in all."""
        with self._hold:
            now = time.monotonic()
            return self._held_total + (0.0 if self._held_since is None else now - self._held_since)

    async def start(self) -> None:
        """Start the child, and wait until its engine is built and warm."""
        async with self._lock:
            await self._ensure_ready()

    async def transcribe(
        self,
        pcm: bytes,
        sample_rate: int,
        context: str,
        timeout: float,  # noqa: ASYNC109 - on expiry the child is killed, not just abandoned
    ) -> TimedTranscript:
        """The words of 16-bit LE mono PCM; PassTimedOut / PassFailed (the child restarted)."""
        if sample_rate != SAMPLE_RATE:
            raise PassFailed(f"sample rate {sample_rate} (the engine takes {SAMPLE_RATE})")
        async with self._lock:
            await self._ensure_ready()
            try:
                header, _ = await self._within(self._exchange({"context": context}, pcm), timeout)
            except TimeoutError:
                await self._restart()
                raise PassTimedOut(f"no transcript within {timeout:g} s") from None
            except (OSError, EOFError, asyncio.IncompleteReadError) as exc:
                await self._restart()
                raise PassFailed(f"the process ended ({type(exc).__name__})") from None
            except asyncio.CancelledError:
                # Cut off mid-exchange, the channel is out of step: a new child next time.
                await self._stop_child()
                raise
        if "error" in header:
            raise PassFailed(str(header["error"]))
        words = tuple(TimedWord(str(w), float(s), float(e)) for w, s, e in header["words"])
        return TimedTranscript(words)

    async def _within(
        self,
        exchange: Coroutine[Any, Any, tuple[dict[str, Any], bytes]],
        timeout: float,  # noqa: ASYNC109 - the time held does not count
    ) -> tuple[dict[str, Any], bytes]:
        """The exchange's result, or TimeoutError once it has run `timeout` seconds, not
        counting the time the child was held."""
        task = asyncio.ensure_future(exchange)
        began, held = time.monotonic(), self.held_seconds()
        try:
            while True:
                spent = time.monotonic() - began - (self.held_seconds() - held)
                done, _ = await asyncio.wait({task}, timeout=max(0.0, timeout - spent))
                if done:
                    return task.result()
                spent = time.monotonic() - began - (self.held_seconds() - held)
                if spent >= timeout:
                    raise TimeoutError
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def close(self) -> None:
        """Stop the child: asked first (stdin closed), killed if it does not end."""
        async with self._lock:
            child, self._child, self._ready = self._child, None, False
            if child is None or child.returncode is not None:
                return
            assert child.stdin is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGCONT)  # a held child could not hear the request
            child.stdin.close()
            try:
                await asyncio.wait_for(child.wait(), CLOSE_SECONDS)
            except TimeoutError:
                await _kill(child)

    async def _ensure_ready(self) -> None:
        if self._child is None or self._child.returncode is not None:
            await self._spawn()
        if self._ready:
            return
        try:
            hello, _ = await asyncio.wait_for(self._receive(), self.ready_timeout)
        except (TimeoutError, OSError, EOFError, asyncio.IncompleteReadError) as exc:
            await self._stop_child()
            raise PassFailed(f"the engine did not start ({type(exc).__name__})") from None
        self._ready = True
        self.priority = str(hello["priority"])
        self.engine_name = str(hello["engine"])
        self.model_id = str(hello["model_id"])

    async def _spawn(self) -> None:
        environment = dict(os.environ)
        path = environment.get("PYTHONPATH")
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_PROJECT_DIR), path]))
        self._ready = False
        self._child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "interview.transcription.child",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=environment,
            cwd=_PROJECT_DIR,
        )
        assert self._child.stdin is not None
        spec = pickle.dumps(self.spec)
        self._child.stdin.write(LENGTH.pack(len(spec)) + spec)
        # The pipe's buffer takes the small spec: a dead child fails the next exchange instead.
        with contextlib.suppress(OSError):
            await self._child.stdin.drain()

    async def _restart(self) -> None:
        """Kill the child and start another at once, so its engine loads before it is needed."""
        await self._stop_child()
        await self._spawn()

    async def _stop_child(self) -> None:
        child, self._child, self._ready = self._child, None, False
        if child is not None:
            await _kill(child)

    async def _exchange(
        self, header: dict[str, Any], payload: bytes
    ) -> tuple[dict[str, Any], bytes]:
        assert self._child is not None and self._child.stdin is not None
        self._child.stdin.write(frame(header, payload))
        await self._child.stdin.drain()
        return await self._receive()

    async def _receive(self) -> tuple[dict[str, Any], bytes]:
        assert self._child is not None and self._child.stdout is not None
        reader = self._child.stdout
        (size,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
        header = json.loads(await reader.readexactly(size))
        (size,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
        return header, await reader.readexactly(size)


async def _kill(child: asyncio.subprocess.Process) -> None:
    if child.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
    await child.wait()
