"""The report writer: reports follow an interview's end, survive a restart, and say when they
are not ready."""

import asyncio
from datetime import UTC, datetime

from interview.config import Settings
from interview.domain import EndReason, ReportStatus, SessionStatus
from interview.events import ResultsChanged
from interview.report import Report
from interview.report.writer import ResultsNotReady
from interview.runtime import Runtime

LONG = "I designed the billing service, split it into queues and workers, and owned its rollout."
NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def build(url: str) -> Runtime:
    return Runtime.build(Settings(database_url=url, voice_enabled=False), clock=lambda: NOW)


async def test_a_report_is_written_when_the_interview_ends(database_url: str):
    runtime = build(database_url)
    await runtime.store.migrate()
    await runtime.events.start()
    try:
        row = (await runtime.service.start("u")).session
        await runtime.service.answer(row, LONG)
        assert await runtime.store.get_report(row.id) is None
        ended = await runtime.service.end(row)
        await runtime.events.flush()  # the end event reached the writer...
        await runtime.reports.wait()  # ...which wrote the report; nothing else asked
        outcome = await runtime.reports.results(ended)
        assert isinstance(outcome, Report) and outcome.metrics.candidate_turns == 1
        await runtime.events.flush()
        results = [
            e.body
            for e in await runtime.events.history(row.id)
            if isinstance(e.body, ResultsChanged)
        ]
        assert [r.status for r in results] == ["ready"]
    finally:
        await runtime.events.stop()
        await runtime.store.dispose()


async def test_pending_report_is_finished_after_a_restart(database_url: str):
    first = build(database_url)
    await first.store.migrate()
    row = (await first.service.start("u")).session
    await first.service.answer(row, LONG)
    # Simulate a crash between ending and writing the report: ended, report pending.
    await first.store.end_session_if_open(
        row.id, status=SessionStatus.ended, reason=EndReason.candidate, at=NOW
    )
    await first.store.save_report(row.id, status=ReportStatus.pending, at=NOW)
    await first.store.dispose()

    second = build(database_url)
    try:
        assert await second.reports.resume_pending() == 1
        await second.reports.wait()
        ended = await second.store.get_session(row.id)
        assert ended is not None
        report = await second.reports.results(ended)
        assert isinstance(report, Report) and report.metrics.candidate_turns == 1
    finally:
        await second.store.dispose()


async def test_results_asked_before_the_report_is_stored_say_pending(database_url: str):
    """A process that did not end the interview (another instance, a restart) writes the report
    when its results are asked for, and says "pending" meanwhile."""
    first = build(database_url)
    await first.store.migrate()
    row = (await first.service.start("u")).session
    await first.store.end_session_if_open(
        row.id, status=SessionStatus.ended, reason=EndReason.candidate, at=NOW
    )
    await first.store.dispose()

    other = build(database_url)
    try:
        ended = await other.store.get_session(row.id)
        assert ended is not None
        assert await other.reports.results(ended) == ResultsNotReady(ReportStatus.pending)
        for _ in range(100):
            outcome = await other.reports.results(ended)
            if isinstance(outcome, Report):
                break
            await asyncio.sleep(0.02)
        assert isinstance(outcome, Report) and outcome.metrics.candidate_turns == 0
    finally:
        await other.store.dispose()
