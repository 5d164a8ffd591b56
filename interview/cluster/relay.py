"""A mailbox in the database between instances (`interview_relay`): one instance asks another to
act on a session, the other does it and writes the result back.

The asker inserts a row addressed to the other instance and waits for its `done_at`; the addressee
finds its rows by polling (often while it holds live connections, seldom otherwise), runs each
through its handler and writes `result` + `done_at`. Both waits are an `asyncio.Event` with a
poll interval as timeout, so a notification (PostgreSQL LISTEN/NOTIFY, interview/store/notify.py)
only has to call `wake()` / `arrived(row_id)` to make them immediate.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from interview.store.tables import RelayRow

log = structlog.get_logger(__name__)

# How often the addressee looks for rows: while it holds live connections (ICE candidates come
# right after an offer), and otherwise (a takeover of a session it no longer holds).
BUSY_POLL_SECONDS = 0.1
IDLE_POLL_SECONDS = 1.0
# How often the asker looks for its result.
RESULT_POLL_SECONDS = 0.05
# Rows older than this are gone for good (their asker timed out or died): removed.
PRUNE_AFTER = timedelta(minutes=5)
PRUNE_EVERY_SECONDS = 60.0

# (kind, session id, payload) -> result; raising is a failure the asker sees as `failed`.
Handler = Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]]


class RelayTimeout(Exception):
    """The addressed instance did not answer in time (hung, overloaded, or just died)."""


class RelayFailed(Exception):
    """The addressed instance could not carry the request out (its handler raised)."""


class Relay:
    """This instance's side of the mailbox: `ask` another instance, `serve` what is asked of it."""

    def __init__(self, engine: AsyncEngine, instance_id: str) -> None:
        self.instance_id = instance_id
        self._engine = engine
        self._wake = asyncio.Event()
        self._results: dict[int, asyncio.Event] = {}
        self._running: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # asking

    async def ask(
        self, instance: str, session_id: str, kind: str, payload: dict[str, Any], wait: float
    ) -> dict[str, Any]:
        """Have `instance` carry out `kind` on the session; its result.

        RelayTimeout after `wait` seconds without one (the row is withdrawn: a late addressee
        finds nothing to do), RelayFailed if its handler raised.
        """
        async with self._engine.begin() as conn:
            row_id = (
                await conn.execute(
                    insert(RelayRow)
                    .values(
                        session_id=session_id,
                        instance=instance,
                        kind=kind,
                        payload=payload,
                        created_at=_now(),
                    )
                    .returning(RelayRow.id)
                )
            ).scalar_one()
        arrived = self._results[row_id] = asyncio.Event()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(wait):
                while True:
                    async with self._engine.connect() as conn:
                        found = (
                            await conn.execute(
                                select(RelayRow.result, RelayRow.done_at).where(
                                    RelayRow.id == row_id
                                )
                            )
                        ).first()
                    if found is None:
                        raise RelayFailed("the request was withdrawn (its session was deleted)")
                    result, done_at = found
                    if done_at is not None:
                        break
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(RESULT_POLL_SECONDS):
                            await arrived.wait()
        except TimeoutError:
            log.warning(
                "relay_timeout",
                instance=instance,
                session_id=session_id,
                kind=kind,
                after_s=wait,
            )
            raise RelayTimeout(f"instance {instance} did not answer within {wait:g} s") from None
        finally:
            self._results.pop(row_id, None)
            await self._withdraw(row_id)
        log.info(
            "relay_answered",
            instance=instance,
            session_id=session_id,
            kind=kind,
            ms=round((time.perf_counter() - started) * 1000),
        )
        if not isinstance(result, dict):
            raise RelayFailed(f"instance {instance} answered {result!r}")
        if "failed" in result:
            raise RelayFailed(str(result["failed"]))
        return result

    def arrived(self, row_id: int) -> None:
        """A result for `row_id` was written (a notification): look now."""
        event = self._results.get(row_id)
        if event is not None:
            event.set()

    # serving

    async def serve(self, handler: Handler, busy: Callable[[], bool]) -> None:
        """Carry out what other instances ask of this one, until cancelled. `busy()` says whether
        this instance holds live connections (then it looks often)."""
        pruned = time.monotonic()
        failing = False
        while True:
            try:
                await self._take(handler)
                if time.monotonic() - pruned > PRUNE_EVERY_SECONDS:
                    pruned = time.monotonic()
                    await self._prune()
                failing = False
            except (SQLAlchemyError, OSError) as exc:
                if not failing:  # once per outage, not every poll
                    log.warning("relay_poll_failed", error=type(exc).__name__)
                failing = True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BUSY_POLL_SECONDS if busy() else IDLE_POLL_SECONDS):
                    await self._wake.wait()
            self._wake.clear()

    def wake(self) -> None:
        """Something was addressed to this instance (a notification): look now."""
        self._wake.set()

    async def settle(self) -> None:
        """Wait for the requests being carried out."""
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    # internals

    async def _take(self, handler: Handler) -> None:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(RelayRow.id, RelayRow.session_id, RelayRow.kind, RelayRow.payload)
                    .where(RelayRow.instance == self.instance_id, RelayRow.done_at.is_(None))
                    .order_by(RelayRow.id)
                )
            ).all()
        for row_id, session_id, kind, payload in rows:
            if row_id in self._running:
                continue
            self._running.add(row_id)
            # Each in its own task: a takeover that closes a connection must not hold up the
            # ICE candidates of another session.
            task = asyncio.get_running_loop().create_task(
                self._carry_out(handler, row_id, session_id, kind, payload)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _carry_out(
        self, handler: Handler, row_id: int, session_id: str, kind: str, payload: dict[str, Any]
    ) -> None:
        try:
            try:
                result = await handler(kind, session_id, payload)
            except Exception as exc:
                log.exception("relay_request_failed", session_id=session_id, kind=kind)
                result = {"failed": f"{type(exc).__name__}: {exc}"}
            async with self._engine.begin() as conn:
                await conn.execute(
                    update(RelayRow)
                    .where(RelayRow.id == row_id, RelayRow.done_at.is_(None))
                    .values(result=result, done_at=_now())
                )
            log.info("relay_carried_out", session_id=session_id, kind=kind)
        except (SQLAlchemyError, OSError) as exc:
            # The asker times out and its client retries.
            log.warning("relay_result_not_written", session_id=session_id, error=type(exc).__name__)
        finally:
            self._running.discard(row_id)

    async def _withdraw(self, row_id: int) -> None:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(delete(RelayRow).where(RelayRow.id == row_id))
        except (SQLAlchemyError, OSError):
            pass  # pruned later

    async def _prune(self) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(RelayRow).where(RelayRow.created_at < _now() - PRUNE_AFTER))


def _now() -> datetime:
    return datetime.now(UTC)
