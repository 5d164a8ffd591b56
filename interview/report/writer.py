"""Writes each ended interview's results report: it reacts to the interview's end, builds the
report, has it evaluated, stores it, and says what the results are meanwhile.

A report always arrives when it can be built: an evaluation that still fails after its attempts
leaves the report `ready` without it (metrics, questions and answers intact), saying why, and
the evaluation is tried again in the background with growing pauses (RetryPolicy), on whichever
instance finds it due first, until it succeeds or the attempts are spent. An operator can ask
for a new one at any time (request_evaluation). Only a report that cannot be built is `failed`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
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
from interview.report.models import Evaluation, Report
from interview.sessions import Clock, utcnow
from interview.store import SessionRow, Store, TurnRow
from interview.store.answer_audio import AnswerAudio

log = structlog.get_logger(__name__)

NOTHING_TO_EVALUATE = "Nothing to evaluate: the candidate gave no answer."
EVALUATION_REQUESTED = "A new evaluation was asked for; it is under way."
# How often each instance looks for background evaluations that are due (at most; sooner when
# the first retry delay is shorter, and as soon as one of its own ends), and how many it runs
# at once: each holds a database connection for its lock while the model works, and those are
# shared with the live interviews' decisions (interview/store/locks.py).
EVALUATION_POLL_SECONDS = 15.0
EVALUATION_CONCURRENCY = 2


def report_lock(session_id: str) -> str:
    """The lock held while a session's report is written or evaluated: one instance at a time
    (also taken by an erasure, so no report of an interview being erased is begun)."""
    return f"report:{session_id}"


class InterviewRunning(Exception):
    """Results were asked for before the interview ended."""


class NotEvaluable(Exception):
    """A new evaluation was asked for a report that cannot have one now; `code` says why."""

    def __init__(
        self,
        code: Literal[
            "evaluation_not_configured", "report_pending", "report_failed", "nothing_to_evaluate"
        ],
        message: str,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ResultsNotReady:
    """The report is still being computed ("pending") or could not be ("failed")."""

    status: Literal[ReportStatus.pending, ReportStatus.failed]
    reason: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """The background evaluations of a report stored without its evaluation: `attempts` of
    them (0: none), the first `first_delay_seconds` after it was stored, each pause doubling up
    to `max_delay_seconds`."""

    attempts: int = 0
    first_delay_seconds: float = 60.0
    max_delay_seconds: float = 3600.0

    def delay(self, done: int) -> timedelta:
        """The pause before the next background attempt, after `done` of them failed."""
        seconds = min(self.first_delay_seconds * 2.0 ** min(done, 30), self.max_delay_seconds)
        return timedelta(seconds=seconds)


class ReportWriter:
    def __init__(
        self,
        store: Store,
        plans: PlanCatalog,
        events: EventBus,
        evaluator: LLMEvaluator | None = None,
        clock: Clock = utcnow,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.store = store
        self.plans = plans
        self.events = events
        self.evaluator = evaluator
        self.clock = clock
        self.retry = retry or RetryPolicy()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._audio = AnswerAudio(store)
        # Background evaluations running in this process, by session; set when one ends.
        self._evaluations: dict[str, asyncio.Task[None]] = {}
        self._evaluation_ended = asyncio.Event()
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

    # background evaluation

    async def request_evaluation(self, row: SessionRow) -> None:
        """An operator asks for a new evaluation of the session's report: it starts now, in the
        background, with a fresh budget of attempts; NotEvaluable says why it cannot."""
        if row.status in OPEN_STATUSES:
            raise InterviewRunning()
        if self.evaluator is None:
            raise NotEvaluable(
                "evaluation_not_configured",
                "No language model evaluates reports on this server (REPORT_EVALUATION, "
                "OPENAI_API_KEY).",
            )
        stored = await self.store.get_report(row.id)
        if stored is None or stored.status == ReportStatus.pending:
            self.schedule(row.id)
            raise NotEvaluable(
                "report_pending",
                "The report is still being written; ask again once GET .../results answers 200.",
            )
        if stored.status == ReportStatus.failed:
            raise NotEvaluable(
                "report_failed", "The report could not be built, so there is nothing to evaluate."
            )
        report = Report.model_validate(stored.body)
        if report.metrics.candidate_turns == 0:
            raise NotEvaluable("nothing_to_evaluate", NOTHING_TO_EVALUATE)
        body = None
        if report.evaluation is None:
            waiting = report.model_copy(
                update={
                    "evaluation_status": "pending_retry",
                    "evaluation_note": EVALUATION_REQUESTED,
                }
            )
            body = waiting.model_dump(mode="json")
        now = self.clock()
        if await self.store.update_evaluation(row.id, at=now, attempts=0, due_at=now, body=body):
            log.info("evaluation_requested", session_id=row.id)
            self._start_evaluation(row.id)

    async def evaluate_due(self) -> int:
        """One look for the background evaluations that are due, started here; how many."""
        if self.evaluator is None:
            return 0
        room = EVALUATION_CONCURRENCY - len(self._evaluations)
        if room <= 0:
            return 0
        due = await self.store.reports_due_for_evaluation(self.clock(), room)
        return sum(self._start_evaluation(session_id) for session_id in due)

    async def run_evaluations(self) -> None:
        """For ever: start the background evaluations that are due. Every instance runs it;
        each report's evaluation is done by one at a time (its lock), and a restart finds what
        was due in the database."""
        pause = min(EVALUATION_POLL_SECONDS, self.retry.first_delay_seconds)
        try:
            while True:
                self._evaluation_ended.clear()
                try:
                    await self.evaluate_due()
                except Exception:  # a database that is away now: the next look may find it
                    log.exception("evaluation_sweep_failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._evaluation_ended.wait(), pause)
        finally:
            await self.stop_evaluations()

    async def wait_evaluations(self) -> None:
        """Until the background evaluations running in this process are done."""
        tasks = list(self._evaluations.values())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def stop_evaluations(self) -> None:
        """Cancel the background evaluations running here; what they had due stays due."""
        tasks = list(self._evaluations.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start_evaluation(self, session_id: str) -> bool:
        if session_id in self._evaluations:
            return False  # under way here; if it is due again when that ends, a look finds it
        task = asyncio.get_running_loop().create_task(self._reevaluate(session_id))
        self._evaluations[session_id] = task

        def ended(_task: asyncio.Task[None]) -> None:
            self._evaluations.pop(session_id, None)
            self._evaluation_ended.set()

        task.add_done_callback(ended)
        return True

    async def _reevaluate(self, session_id: str) -> None:
        # The report's lock, as for writing it: one instance evaluates it at a time, and reads
        # its row again once it holds the lock (another may have evaluated it meanwhile).
        async with self.store.locks.try_hold(report_lock(session_id)) as mine:
            if not mine:
                return
            try:
                await self._reevaluate_once(session_id)
            except Exception:  # the database went away: still due, the next look retries it
                log.exception("background_evaluation_failed", session_id=session_id)

    async def _reevaluate_once(self, session_id: str) -> None:
        assert self.evaluator is not None
        stored = await self.store.get_report(session_id)
        now = self.clock()
        if (
            stored is None
            or stored.status != ReportStatus.ready
            or stored.evaluation_due_at is None
            or stored.evaluation_due_at > now
        ):
            return
        report = Report.model_validate(stored.body)
        attempt = stored.evaluation_attempts + 1
        log.info("background_evaluation", session_id=session_id, attempt=attempt)
        session = await self.store.get_session(session_id)
        if session is None:
            return  # erased meanwhile
        turns = await self._spoken_turns(session_id)
        outcome = await self._try_evaluate(session.plan_id, report, turns)
        if isinstance(outcome, str):
            final = attempt >= self.retry.attempts
            changed = await self.store.update_evaluation(
                session_id,
                at=self.clock(),
                attempts=attempt,
                due_at=None if final else self.clock() + self.retry.delay(attempt),
                body=self._without_evaluation(report, outcome, final).model_dump(mode="json"),
                unless_changed_from=stored,
            )
            if changed and final:
                log.error("evaluation_given_up", session_id=session_id, attempts=attempt)
                self.events.publish(session_id, ResultsChanged(status=ReportStatus.ready))
            return
        evaluated = _with_evaluation(report, outcome)
        # Stored whatever happened meanwhile: an evaluation made now is as new as any asked for.
        if await self.store.update_evaluation(
            session_id,
            at=self.clock(),
            attempts=attempt,
            due_at=None,
            body=evaluated.model_dump(mode="json"),
        ):
            log.info("evaluation_ready", session_id=session_id, attempt=attempt)
            self.events.publish(session_id, ResultsChanged(status=ReportStatus.ready))

    # writing

    def _on_event(self, event: Event) -> None:
        body = event.body
        if isinstance(body, StatusChanged) and body.status in ENDED_STATUSES:
            self.schedule(event.session_id)

    async def _write(self, session_id: str) -> None:
        # One instance writes a report: the others (asked for results meanwhile, or resuming
        # after a restart) leave it to the one that holds its lock.
        async with self.store.locks.try_hold(report_lock(session_id)) as mine:
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
            pending = await self._audio.pending_passes(session_id)
            if pending:
                # The report quotes the accurate transcript: the pass that finishes the last
                # answer (or gives it up at its deadline) asks for the report again.
                log.debug("report_waits_for_transcript", session_id=session_id, pending=pending)
                return
            turns = await self._spoken_turns(session_id)
            plan = self.plans.get(row.plan_id)
            report = build_report(plan, row, turns, now=self.clock())
            due_at = None
            if self.evaluator is not None:
                # Never raises: a failed evaluation leaves the report without it.
                report, due_at = await self._evaluate(report, plan, turns)
            saved = await self.store.save_report(
                session_id,
                status=ReportStatus.ready,
                at=self.clock(),
                body=report.model_dump(mode="json"),
                evaluation_due_at=due_at,
            )
            if not saved:
                return  # the interview was erased meanwhile: nothing to announce
            log.info("report_ready", session_id=session_id, evaluation=report.evaluation_status)
            self.events.publish(session_id, ResultsChanged(status=ReportStatus.ready))
        except Exception as exc:  # a report that cannot be built is stored as failed, with why
            log.exception("report_failed", session_id=session_id)
            # The reason shown to clients names the failure, not its details (SQL, values).
            reason = f"the report could not be built ({type(exc).__name__}); see the service log"
            await self._failed(session_id, reason)

    async def _spoken_turns(self, session_id: str) -> list[TurnRow]:
        # A withdrawn reply was never said (the answer went on); a check-in moves nothing.
        return [
            t
            for t in await self.store.list_turns(session_id)
            if t.interruption != Interruption.withdrawn and t.kind != TurnKind.check_in
        ]

    async def _evaluate(
        self, report: Report, plan: InterviewPlan, turns: Sequence[TurnRow]
    ) -> tuple[Report, datetime | None]:
        """The report with the model's evaluation, or without it and saying why; and when the
        evaluation is to be tried again in the background (None: it is not)."""
        if report.metrics.candidate_turns == 0:
            nothing = {
                "evaluation_status": "nothing_to_evaluate",
                "evaluation_note": NOTHING_TO_EVALUATE,
            }
            return report.model_copy(update=nothing), None
        outcome = await self._try_evaluate(plan.id, report, turns)
        if isinstance(outcome, str):
            final = self.retry.attempts == 0
            due_at = None if final else self.clock() + self.retry.delay(0)
            return self._without_evaluation(report, outcome, final), due_at
        return _with_evaluation(report, outcome), None

    async def _try_evaluate(
        self, plan_id: str, report: Report, turns: Sequence[TurnRow]
    ) -> Evaluation | str:
        """The model's evaluation of the report, or why there is none (never an exception)."""
        assert self.evaluator is not None
        session_id = report.session_id
        try:
            evaluation = await self.evaluator.evaluate(
                self.plans.get(plan_id), report.questions, turns, session_id=session_id
            )
        except EvaluationFailed as exc:
            log.error("evaluation_failed", session_id=session_id, reason=str(exc))
            return str(exc)
        except Exception as exc:
            # Not the model's failure (a plan renamed since, a bug): named, not detailed.
            log.exception("evaluation_error", session_id=session_id)
            return f"the evaluation could not be made ({type(exc).__name__}); see the service log"
        flagged = len(evaluation.flagged_quotes)
        if flagged:
            log.warning("evaluation_quotes_flagged", session_id=session_id, count=flagged)
        return evaluation

    @staticmethod
    def _without_evaluation(report: Report, reason: str, final: bool) -> Report:
        """The report after an evaluation failed: saying why, and whether it is tried again.
        An earlier evaluation (an operator asked for a new one) is kept."""
        then = (
            "No further attempt is made; POST .../results/evaluation asks for a new one."
            if final
            else "It is tried again in the background."
        )
        if report.evaluation is not None:
            note = f"A new evaluation failed ({reason}); this is the earlier one. {then}"
            return report.model_copy(update={"evaluation_note": note})
        return report.model_copy(
            update={
                "evaluation_status": "failed" if final else "pending_retry",
                "evaluation_note": f"No evaluation: {reason}. {then}",
            }
        )

    async def _failed(self, session_id: str, reason: str) -> None:
        if await self.store.save_report(
            session_id, status=ReportStatus.failed, at=self.clock(), error=reason
        ):
            self.events.publish(session_id, ResultsChanged(status=ReportStatus.failed))


def _with_evaluation(report: Report, evaluation: Evaluation) -> Report:
    return report.model_copy(
        update={"evaluation": evaluation, "evaluation_status": "ready", "evaluation_note": None}
    )
