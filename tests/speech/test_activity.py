"""LiveActivity and LiveExecutor with real threads: busy while any live job runs, idle after."""

from __future__ import annotations

import threading

from interview.speech.activity import LiveActivity, LiveExecutor
from interview.speech.priority_worker import NOW, PriorityWorker


def test_listeners_hear_busy_once_for_overlapping_jobs_and_idle_after_the_last():
    activity = LiveActivity()
    heard: list[bool] = []
    activity.add_listener(heard.append)
    started, release = threading.Barrier(3), threading.Event()

    def job() -> None:
        started.wait(5)
        release.wait(5)

    pool = LiveExecutor(activity, 2, thread_name_prefix="test")
    futures = [pool.submit(job), pool.submit(job)]
    started.wait(5)
    assert activity.busy and heard == [True]
    release.set()
    for future in futures:
        future.result(5)
    pool.shutdown()
    assert not activity.busy and heard == [True, False]


def test_a_failing_job_still_ends_the_live_work():
    activity = LiveActivity()
    heard: list[bool] = []
    activity.add_listener(heard.append)

    def boom() -> None:
        raise ValueError("engine failed")

    worker = PriorityWorker("test", activity=activity)
    future = worker.submit(NOW, boom)
    assert isinstance(future.exception(5), ValueError)
    worker.shutdown()
    assert heard == [True, False] and not activity.busy


def test_work_entered_by_hand_is_live_until_it_leaves():
    activity = LiveActivity()
    heard: list[bool] = []
    activity.add_listener(heard.append)
    activity.enter()
    with activity.live():  # a job inside a reply being made: still one stretch of live work
        assert activity.busy
    assert activity.busy and heard == [True]
    activity.leave()
    assert not activity.busy and heard == [True, False]
