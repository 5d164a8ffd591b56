"""One thread that runs the most urgent job first, and lets a queued job become more urgent.

Text-to-speech is the slow stage. With a plain pool, the prefetch of lines that may come next,
or the fourth sentence of a long greeting, could hold the cores while another candidate waits
for the first words of a reply. Here the first sentence of a reply always goes first.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from interview.speech.activity import LiveActivity

NOW = 0  # the first sentence of a reply someone is waiting for
SOON = 1  # the rest of that reply
LATER = 2  # lines that may be needed next


@dataclass
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: Future[Any] = field(default_factory=Future)
    taken: bool = False


class PriorityWorker:
    def __init__(self, name: str, activity: LiveActivity | None = None) -> None:
        self._activity = activity
        self._queue: queue.PriorityQueue[tuple[int, int, _Job | None]] = queue.PriorityQueue()
        self._order = itertools.count()
        self._jobs: dict[int, _Job] = {}  # id(future) -> job, while queued
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, priority: int, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        job = _Job(fn, args)
        with self._lock:
            self._jobs[id(job.future)] = job
        self._queue.put((priority, next(self._order), job))
        return job.future

    def promote(self, future: Future[Any], priority: int) -> None:
        """Make a queued job at least this urgent (no effect once it has started)."""
        with self._lock:
            job = self._jobs.get(id(future))
        if job is not None and not job.taken:
            self._queue.put((priority, next(self._order), job))

    def shutdown(self) -> None:
        self._queue.put((-1, next(self._order), None))

    def _run(self) -> None:
        while True:
            _priority, _order, job = self._queue.get()
            if job is None:
                return
            with self._lock:
                if job.taken:
                    continue  # a promoted copy already ran it
                job.taken = True
                self._jobs.pop(id(job.future), None)
            if not job.future.set_running_or_notify_cancel():
                continue
            try:
                if self._activity is None:
                    job.future.set_result(job.fn(*job.args))
                else:
                    job.future.set_result(self._activity.run(job.fn, *job.args))
            except Exception as exc:  # noqa: BLE001 - handed to whoever awaits the future
                job.future.set_exception(exc)
