"""This process among the instances sharing one database: its id, its heartbeat and draining flag
in `interview_instances`, and whether another instance is still alive."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import socket
from datetime import timedelta

import structlog
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from interview.config import Settings
from interview.store.tables import InstanceRow

log = structlog.get_logger(__name__)

# An instance silent this many times longer than the dead-after setting is forgotten: absent and
# dead mean the same, and a row per crashed process would otherwise stay for ever.
FORGET_AFTER_DEAD = 30
ID_LENGTH = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def generated_id(host: str | None = None, pid: int | None = None) -> str:
    """host-pid-random, in the characters (and length) INSTANCE_ID allows.

    The random part keeps a restarted process (same host, a recycled pid) from inheriting the
    sessions its predecessor owned."""
    suffix = f"-{pid if pid is not None else os.getpid()}-{secrets.token_hex(3)}"
    name = _UNSAFE.sub("-", host if host is not None else socket.gethostname()).strip("-.")
    return (name or "instance")[: ID_LENGTH - len(suffix)] + suffix


class InstanceRegistry:
    """This instance's row, kept fresh, and the liveness of the others.

    `shared` is False on SQLite, which one process uses at a time: nothing is written and no other
    instance exists, so every session's media is this process's.
    """

    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.id = settings.instance_id or generated_id()
        self.heartbeat_seconds = settings.instance_heartbeat_seconds
        self.dead_after = timedelta(seconds=settings.instance_dead_after_seconds)
        self.shared = engine.dialect.name == "postgresql"
        self.draining = False
        self._engine = engine
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Write this instance's row now and every `heartbeat_seconds` (in the background: a
        database that is down is retried at the next beat)."""
        if self.shared and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._beat_forever())

    async def set_draining(self) -> None:
        """Say that this instance is draining (it takes no new offers)."""
        self.draining = True
        if self.shared:
            with contextlib.suppress(SQLAlchemyError, OSError):
                await self._beat()

    async def stop(self) -> None:
        """Stop the heartbeat and remove this instance's row (a clean stop)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not self.shared:
            return
        try:
            async with self._engine.begin() as conn:
                await conn.execute(delete(InstanceRow).where(InstanceRow.id == self.id))
        except (SQLAlchemyError, OSError) as exc:  # it reads as dead once its heartbeat is stale
            log.warning("instance_row_not_removed", instance_id=self.id, error=type(exc).__name__)

    async def alive(self, instance_id: str) -> bool:
        """Whether `instance_id` has beaten within INSTANCE_DEAD_AFTER_SECONDS (by the database's
        clock, so hosts' clocks need not agree). This instance is always alive."""
        if instance_id == self.id or not self.shared:
            return True
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(InstanceRow.heartbeat_at, func.now()).where(
                        InstanceRow.id == instance_id
                    )
                )
            ).first()
        if row is None:
            return False  # stopped cleanly, or forgotten
        heartbeat_at, now = row
        return bool(now - heartbeat_at < self.dead_after)

    # internals

    async def _beat_forever(self) -> None:
        failing = False
        while True:
            try:
                await self._beat()
                await self._forget_the_long_dead()
                if failing:
                    log.info("instance_heartbeat_restored", instance_id=self.id)
                failing = False
            except (SQLAlchemyError, OSError) as exc:
                if not failing:  # once per outage, not every beat
                    log.warning("instance_heartbeat_failed", error=type(exc).__name__)
                failing = True
            await asyncio.sleep(self.heartbeat_seconds)

    async def _beat(self) -> None:
        """Upsert: the row comes back if someone removed it."""
        statement = insert(InstanceRow).values(
            id=self.id, started_at=func.now(), heartbeat_at=func.now(), draining=self.draining
        )
        statement = statement.on_conflict_do_update(
            index_elements=[InstanceRow.id],
            set_={"heartbeat_at": func.now(), "draining": self.draining},
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement)

    async def _forget_the_long_dead(self) -> None:
        horizon = func.now() - self.dead_after * FORGET_AFTER_DEAD
        async with self._engine.begin() as conn:
            await conn.execute(delete(InstanceRow).where(InstanceRow.heartbeat_at < horizon))
