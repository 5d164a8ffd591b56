"""Whether live speech work (a transcription, a synthesis) is running, for whoever must yield.

The accurate pass runs at idle CPU priority, but on a machine whose two CPUs are one core's two
hyperthreads an idle-priority thread still slows its sibling: replies with 8 sessions were 19 %
slower at p95 (benchmarks/README.md, "The accurate pass"). So the pass is stopped outright while
any live job runs, and resumed when none does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

Listener = Callable[[bool], None]


class LiveActivity:
    """Counts the live jobs running; tells its listeners when the count leaves or reaches 0
    (from the job's own thread, in order)."""

    def __init__(self) -> None:
        self._running = 0
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    @property
    def busy(self) -> bool:
        return self._running > 0

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call `fn` as live work."""
        with self.live():
            return fn(*args, **kwargs)

    @contextmanager
    def live(self) -> Iterator[None]:
        """Live work while inside."""
        self.enter()
        try:
            yield
        finally:
            self.leave()

    def enter(self) -> None:
        """Live work begins (a reply being made: from the end of the answer to the reply's
        first audio, its event-loop and audio work included); `leave` once it ends."""
        with self._lock:
            self._running += 1
            if self._running == 1:
                self._tell(True)

    def leave(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running == 0:
                self._tell(False)

    def _tell(self, busy: bool) -> None:
        # Under the lock, so a "busy" and the "idle" after it can never arrive swapped.
        for listener in self._listeners:
            listener(busy)


class LiveExecutor(ThreadPoolExecutor):
    """A thread pool whose every job counts as live work."""

    def __init__(self, activity: LiveActivity, max_workers: int, thread_name_prefix: str) -> None:
        super().__init__(max_workers, thread_name_prefix=thread_name_prefix)
        self.activity = activity

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return super().submit(self.activity.run, fn, *args, **kwargs)
