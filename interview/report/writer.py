"""Writes each ended interview's results report: it reacts to the interview's end, builds the
report, has it evaluated, stores it, and says what the results are meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import structlog

from interview.domain import (
    ENDED_STATUSES,
    OPEN_STATUSES,
    Interruption,
    ReportStatus,
    TurnKind,
)
from interview.events import Event, EventBus, ResultsChanged, StatusChanged
from interview.plans import InterviewPlan, PlanCatalog
from interview.report.evaluation import EvaluationFailed, LLMEvaluator
from interview.report.metrics import build_report
from interview.report.models import Report
from interview.sessions import Clock, utcnow
from interview.store import SessionRow, Store, TurnRow

log = structlog.get_logger(__name__)


class InterviewRunning(Exception):
    """Results were asked for before the interview ended."""


@dataclass(frozen=True)
class ResultsNotReady:
    """The report is still being computed ("pending") or could not be ("failed")."""

    status: Literal[ReportStatus.pending, ReportStatus.failed]
    reason: str | None = None


class ReportWriter:
    def __init__(
        self,
        store: Store,
        plans: PlanCatalog,
        events: EventBus,
        evaluator: LLMEvaluator | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.store = store
        self.plans = plans
        self.events = events
        self.evaluator = evaluator
        self.clock = clock
        self._tasks: dict[str, asyncio.Task[None]] = {}
        events.add_listener(self._on_event)

    async def results(self, row: SessionRow) -> Report | ResultsNotReady:
        """The session's report, or why there is none yet."""
        if row.status in OPEN_STATUSES:
            raise InterviewRunning()
        report = await self.store.get_report(row.id)
        if report is None or report.status == ReportStatus.pending:
            # Not written (yet) by whichever process ended the interview: write it here.
            self.schedule(row.id)
            return ResultsNotReady(ReportStatus.pending)
        if report.status == ReportStatus.failed:
            return ResultsNotReady(ReportStatus.failed, report.error or "unknown error")
        return Report.model_validate(report.body)

    async def resume_pending(self) -> int:
        """After a restart, finish the reports that were not written when the process stopped."""
        pending = await self.store.ended_sessions_without_ready_report()
        for session_id in pending:
            self.schedule(session_id)
        return len(pending)

    async def wait(self) -> None:
        """Until the reports being written now are stored."""
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def schedule(self, session_id: str) -> None:
        if session_id in self._tasks:
            return
        task = asyncio.get_running_loop().create_task(self._write(session_id))
        self._tasks[session_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(session_id, None))

    def _on_event(self, event: Event) -> None:
        body = event.body
        if isinstance(body, StatusChanged) and body.status in ENDED_STATUSES:
            self.schedule(event.session_id)

    async def _write(self, session_id: str) -> None:
        # One instance writes a report: the others (asked for results meanwhile, or resuming
        # after a restart) leave it to the one that holds its lock.
        async with self.store.locks.try_hold(f"report:{session_id}") as mine:
            if mine:
                await self._write_once(session_id)

    async def _write_once(self, session_id: str) -> None:
        try:
            existing = await self.store.get_report(session_id)
            if existing is not None and existing.status != ReportStatus.pending:
                return  # another instance wrote it before this one got the lock
            row = await self.store.get_session(session_id)
            if row is None:
                return
            # A withdrawn reply was never said (the answer went on); a check-in moves nothing.
            turns = [
                t
                for t in await self.store.list_turns(session_id)
                if t.interruption != Interruption.withdrawn and t.kind != TurnKind.check_in
            ]
            plan = self.plans.get(row.plan_id)
            report = build_report(plan, row, turns, now=self.clock())
            if self.evaluator is not None:
                evaluated = await self._evaluate(report, plan, turns)
                if evaluated is None:
                    return
                report = evaluated
            await self.store.save_report(
                session_id,
                status=ReportStatus.ready,
                at=self.clock(),
                body=report.model_dump(mode="json"),
            )
            log.info("report_ready", session_id=session_id)
            self.events.publish(session_id, ResultsChanged(status=ReportStatus.ready))
        except Exception as exc:  # a report that cannot be built is stored as failed, with why
            log.exception("report_failed", session_id=session_id)
            # The reason shown to clients names the failure, not its details (SQL, values).
            reason = f"the report could not be built ({type(exc).__name__}); see the service log"
            await self._failed(session_id, reason)

    async def _evaluate(
        self, report: Report, plan: InterviewPlan, turns: Sequence[TurnRow]
    ) -> Report | None:
        """The report with the model's evaluation, or None once it is stored as failed."""
        if report.metrics.candidate_turns == 0:
            return report.model_copy(
                update={"evaluation_note": "Nothing to evaluate: the candidate gave no answer."}
            )
        assert self.evaluator is not None
        try:
            evaluation = await self.evaluator.evaluate(
                plan, report.questions, turns, session_id=report.session_id
            )
        except EvaluationFailed as exc:
            log.error("evaluation_failed", session_id=report.session_id, reason=str(exc))
            await self._failed(report.session_id, str(exc))
            return None
        flagged = len(evaluation.flagged_quotes)
        if flagged:
            log.warning("evaluation_quotes_flagged", session_id=report.session_id, count=flagged)
        return report.model_copy(update={"evaluation": evaluation, "evaluation_note": None})

    async def _failed(self, session_id: str, reason: str) -> None:
        await self.store.save_report(
            session_id, status=ReportStatus.failed, at=self.clock(), error=reason
        )
        self.events.publish(session_id, ResultsChanged(status=ReportStatus.failed))
