"""PriorityWorker: one thread, the most urgent job first, promotable while queued.

The worker is held busy by a job waiting on a threading.Event, so everything queued behind it
is ordered by the worker alone; waits are on events and futures with generous timeouts, never
on how fast anything runs.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError, Future

import pytest

from interview.speech.priority_worker import LATER, NOW, SOON, PriorityWorker

WAIT = 10.0  # seconds; only ever reached if something is broken
_names = itertools.count()


class Blocker:
    """A job that holds the worker until released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> str:
        self.started.set()
        assert self.release.wait(WAIT), "the test never released the worker"
        return "blocker"


def worker_thread(name: str) -> threading.Thread:
    [thread] = [t for t in threading.enumerate() if t.name == name]
    return thread


@pytest.fixture
def worker() -> Iterator[PriorityWorker]:
    name = f"test-priority-worker-{next(_names)}"
    pool = PriorityWorker(name)
    thread = worker_thread(name)
    yield pool
    pool.shutdown()
    thread.join(WAIT)


def block(worker: PriorityWorker) -> tuple[Blocker, Future[str]]:
    blocker = Blocker()
    future = worker.submit(NOW, blocker)
    assert blocker.started.wait(WAIT)
    return blocker, future


def test_jobs_run_most_urgent_first(worker: PriorityWorker) -> None:
    ran: list[str] = []
    blocker, blocked = block(worker)
    futures = [
        worker.submit(LATER, ran.append, "later-1"),
        worker.submit(SOON, ran.append, "soon-1"),
        worker.submit(NOW, ran.append, "now-1"),
        worker.submit(LATER, ran.append, "later-2"),
        worker.submit(NOW, ran.append, "now-2"),
        worker.submit(SOON, ran.append, "soon-2"),
    ]
    assert ran == []  # nothing overtakes the job that is running
    blocker.release.set()
    for future in futures:
        future.result(WAIT)

    assert blocked.result(WAIT) == "blocker"
    # Most urgent first; first come, first served within a priority.
    assert ran == ["now-1", "now-2", "soon-1", "soon-2", "later-1", "later-2"]


def test_results_and_arguments_reach_the_future(worker: PriorityWorker) -> None:
    assert worker.submit(SOON, pow, 2, 10).result(WAIT) == 1024
    assert worker.submit(NOW, str.join, "-", ["a", "b"]).result(WAIT) == "a-b"


def test_promote_moves_a_queued_job_ahead(worker: PriorityWorker) -> None:
    ran: list[str] = []
    blocker, _ = block(worker)
    soon = worker.submit(SOON, ran.append, "soon")
    later = worker.submit(LATER, ran.append, "prefetched line")
    worker.promote(later, NOW)
    blocker.release.set()
    soon.result(WAIT)
    later.result(WAIT)

    assert ran == ["prefetched line", "soon"]


def test_a_promoted_job_runs_exactly_once(worker: PriorityWorker) -> None:
    calls: list[str] = []
    blocker, _ = block(worker)
    job = worker.submit(LATER, calls.append, "line")
    worker.promote(job, SOON)
    worker.promote(job, NOW)
    worker.promote(job, NOW)
    blocker.release.set()
    job.result(WAIT)
    # Every queued copy of the job has been taken once the worker runs a job queued after them.
    worker.submit(LATER, calls.append, "after").result(WAIT)

    assert calls == ["line", "after"]


def test_promote_to_a_lower_urgency_does_not_delay_a_job(worker: PriorityWorker) -> None:
    ran: list[str] = []
    blocker, _ = block(worker)
    urgent = worker.submit(NOW, ran.append, "urgent")
    soon = worker.submit(SOON, ran.append, "soon")
    worker.promote(urgent, LATER)
    blocker.release.set()
    urgent.result(WAIT)
    soon.result(WAIT)
    worker.submit(LATER, ran.append, "after").result(WAIT)

    assert ran == ["urgent", "soon", "after"]


def test_promote_after_a_job_ran_has_no_effect(worker: PriorityWorker) -> None:
    calls: list[str] = []
    done = worker.submit(NOW, calls.append, "once")
    done.result(WAIT)
    worker.promote(done, NOW)
    worker.submit(LATER, calls.append, "after").result(WAIT)

    assert calls == ["once", "after"]


def test_an_exception_reaches_the_future_and_the_worker_goes_on(worker: PriorityWorker) -> None:
    def fail() -> None:
        raise RuntimeError("synthesis failed")

    failed = worker.submit(NOW, fail)
    with pytest.raises(RuntimeError, match="synthesis failed"):
        failed.result(WAIT)
    assert isinstance(failed.exception(), RuntimeError)
    assert worker.submit(NOW, lambda: "still working").result(WAIT) == "still working"


def test_a_job_cancelled_while_queued_never_runs(worker: PriorityWorker) -> None:
    calls: list[str] = []
    blocker, _ = block(worker)
    cancelled = worker.submit(SOON, calls.append, "cancelled")
    assert cancelled.cancel()
    blocker.release.set()
    worker.submit(LATER, calls.append, "after").result(WAIT)

    assert calls == ["after"]
    with pytest.raises(CancelledError):
        cancelled.result(0)


def test_jobs_run_on_the_worker_thread_one_at_a_time(worker: PriorityWorker) -> None:
    threads: set[str] = set()
    running = 0
    overlaps = 0
    lock = threading.Lock()

    def job() -> None:
        nonlocal running, overlaps
        with lock:
            running += 1
            overlaps += running > 1
        threads.add(threading.current_thread().name)
        with lock:
            running -= 1

    futures = [worker.submit(i % 3, job) for i in range(50)]
    for future in futures:
        future.result(WAIT)

    assert overlaps == 0
    assert len(threads) == 1
    assert threading.current_thread().name not in threads


def test_shutdown_stops_the_thread() -> None:
    name = f"test-priority-worker-shutdown-{next(_names)}"
    worker = PriorityWorker(name)
    thread = worker_thread(name)
    assert thread.daemon
    assert worker.submit(NOW, lambda: 1).result(WAIT) == 1

    worker.shutdown()
    thread.join(WAIT)

    assert not thread.is_alive()


def test_shutdown_waits_for_the_running_job() -> None:
    name = f"test-priority-worker-shutdown-{next(_names)}"
    worker = PriorityWorker(name)
    thread = worker_thread(name)
    blocker, blocked = block(worker)
    worker.shutdown()
    assert thread.is_alive()  # the job in hand is finished first

    blocker.release.set()
    thread.join(WAIT)

    assert blocked.result(0) == "blocker"
    assert not thread.is_alive()
