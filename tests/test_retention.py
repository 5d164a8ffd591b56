"""Erasing interviews through the service's parts as production wires them, on real databases:
one on request (live, just ended with its report being written), and the retention sweep."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from harness.fake_openai import FakeOpenAI, Hang
from harness.postgres import PostgresServer
from interview.domain import SessionStatus
from interview.events import Event, StatusChanged
from interview.runtime import Runtime
from interview.sessions import InterviewService
from tests.store.test_erasure import rows_of
from tests.test_sessions import LONG, Clock, build

WAIT = 10.0  # seconds; only reached if something is broken


async def started(runtime: Runtime) -> None:
    await runtime.store.migrate()
    await runtime.events.start()


async def stopped(runtime: Runtime) -> None:
    await runtime.events.flush()
    await runtime.reports.wait()
    await runtime.events.stop()
    await runtime.store.dispose()


@pytest.fixture
async def runtime(database_url: str, clock: Clock) -> AsyncIterator[Runtime]:
    parts = build(database_url, clock, data_retention_days=90)
    await started(parts)
    yield parts
    await stopped(parts)


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def interview(service: InterviewService, *, end: bool) -> str:
    """A text interview with two answers; ended (and so reported on) when `end`."""
    started = await service.start("user-1", candidate_name="Ada")
    for _ in range(2):
        await service.answer(started.session, LONG)
    if end:
        await service.end(started.session)
    return started.session.id


async def nothing_left(runtime: Runtime, session_id: str) -> None:
    """No row of the session in any table, nor any event kept in this process."""
    # Whatever was under way for it (its report, its events) has finished first.
    await runtime.events.flush()
    await runtime.reports.wait()
    await runtime.events.flush()
    assert set((await rows_of(runtime.store, session_id)).values()) == {0}
    assert await runtime.events.history(session_id) == []


async def test_erasing_a_live_interview_ends_it_then_leaves_nothing(runtime: Runtime):
    service = runtime.service
    heard: list[Event] = []
    runtime.events.add_listener(heard.append, everywhere=True)
    other = await interview(service, end=False)
    session_id = await interview(service, end=False)
    other_rows = await rows_of(runtime.store, other)

    assert await runtime.erasure.erase(session_id) is True

    # Its end was announced before it went (a call anywhere hangs up on it).
    assert StatusChanged(status=SessionStatus.ended, reason="candidate") in [
        e.body for e in heard if e.session_id == session_id
    ]
    await nothing_left(runtime, session_id)
    assert await runtime.erasure.erase(session_id) is False  # gone: nothing to do
    # Nothing else was touched.
    assert await rows_of(runtime.store, other) == other_rows
    other_row = await service.store.get_session(other)
    assert other_row is not None and other_row.status == "active"


async def test_erasing_an_interview_begins_no_report_of_it(
    database_url: str, clock: Clock, fake_openai: FakeOpenAI
):
    """The end of an interview being erased starts no report: its answers are never sent to
    the evaluation model."""
    runtime = build(
        database_url,
        clock,
        interviewer="scripted",
        openai_api_key=fake_openai.api_key,
        openai_base_url=fake_openai.base_url,
        report_evaluation=True,
    )
    await started(runtime)
    try:
        session_id = await interview(runtime.service, end=False)
        assert await runtime.erasure.erase(session_id)
        await nothing_left(runtime, session_id)
        assert fake_openai.chat_requests() == []
    finally:
        await stopped(runtime)


async def test_erasing_while_the_report_is_being_written_leaves_nothing(
    database_url: str, clock: Clock, fake_openai: FakeOpenAI
):
    runtime = build(
        database_url,
        clock,
        interviewer="scripted",
        openai_api_key=fake_openai.api_key,
        openai_base_url=fake_openai.base_url,
        report_evaluation=True,
        evaluation_timeout_seconds=1.0,
        evaluation_max_attempts=1,
    )
    fake_openai.chat.append(Hang(2.0))
    await started(runtime)
    try:
        session_id = await interview(runtime.service, end=True)
        async with asyncio.timeout(WAIT):
            # The report is being evaluated (the fake records requests from its own thread).
            while not fake_openai.chat_requests():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert await runtime.erasure.erase(session_id)
        # The writer goes on to store its report and announce it: nothing is stored.
        await nothing_left(runtime, session_id)
    finally:
        await stopped(runtime)


async def test_the_sweep_erases_only_interviews_past_the_retention_period(
    runtime: Runtime, clock: Clock
):
    service = runtime.service
    oldest = await interview(service, end=True)
    clock.advance(days=10)
    newer = await interview(service, end=True)
    clock.advance(days=5)
    live = await interview(service, end=False)
    await runtime.reports.wait()
    before = {kept: await rows_of(runtime.store, kept) for kept in (newer, live)}

    clock.advance(days=75, seconds=1)  # `oldest` ended 90 days and a second ago
    assert await runtime.erasure.sweep() == 1
    await nothing_left(runtime, oldest)
    for kept in (newer, live):
        assert await rows_of(runtime.store, kept) == before[kept]
    assert await runtime.erasure.sweep() == 0

    clock.advance(days=9, hours=23)  # `newer`: 89 days 23 hours: kept
    assert await runtime.erasure.sweep() == 0
    clock.advance(hours=1)
    assert await runtime.erasure.sweep() == 1
    await nothing_left(runtime, newer)
    # An interview that has not ended is not swept, however old.
    assert (await service.store.get_session(live)) is not None


async def test_a_retention_of_zero_days_keeps_interviews_for_ever(database_url: str, clock: Clock):
    runtime = build(database_url, clock, data_retention_days=0)
    await started(runtime)
    try:
        session_id = await interview(runtime.service, end=True)
        clock.advance(days=3650)
        assert await runtime.erasure.sweep() == 0
        assert await runtime.store.get_session(session_id) is not None
    finally:
        await stopped(runtime)


async def test_several_instances_sweeping_at_once(postgres_server: PostgresServer, clock: Clock):
    """Every instance runs the sweep: at once, each interview is erased once and none fails."""
    url = postgres_server.create_database()
    instances = [build(url, clock, data_retention_days=30) for _ in range(3)]
    for runtime in instances:
        await started(runtime)
    try:
        ids = [await interview(instances[0].service, end=True) for _ in range(12)]
        await instances[0].reports.wait()
        clock.advance(days=31)
        swept = await asyncio.gather(*(runtime.erasure.sweep() for runtime in instances))
        assert sum(swept) == len(ids)
        # Purges that do not take turns (the operator's command beside the sweep) share the
        # work the same way.
        more = [await interview(instances[1].service, end=True) for _ in range(12)]
        await instances[1].reports.wait()
        clock.advance(days=31)
        purged = await asyncio.gather(
            *(runtime.erasure.purge(clock.now, limit=None) for runtime in instances)
        )
        assert sum(purged) == len(more)
        for session_id in ids + more:
            await nothing_left(instances[0], session_id)
    finally:
        for runtime in instances:
            await stopped(runtime)
