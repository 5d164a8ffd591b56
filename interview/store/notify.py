"""This process's one PostgreSQL LISTEN connection: each channel's NOTIFY payloads to its callbacks.

One connection (psycopg, autocommit) serves every channel of the process (the live events, and
whatever else listens later). When it drops (a restart of the database, a failover, a killed
backend, a network that went silent: a periodic `SELECT 1` notices that), it is opened again
with a growing backoff, every channel is listened to again, and the `on_reconnect` callbacks are
told that notifications may have been missed meanwhile: PostgreSQL does not keep them for a
listener that was away, so their owners re-read what they follow from the tables.

Callbacks run on the event loop, in the order the notifications arrive (for one channel, the
order their transactions committed); they must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable

import psycopg
import structlog
from psycopg import sql
from sqlalchemy.engine import make_url

log = structlog.get_logger(__name__)

# How long one wait for notifications lasts: a channel added meanwhile is listened to after it.
POLL_SECONDS = 0.5
# How often an idle connection is checked, and how long the check may take.
HEALTH_SECONDS = 5.0
HEALTH_TIMEOUT_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 10.0
# Reconnection backoff: doubled after each failure, with jitter so instances do not stampede.
BACKOFF_MIN_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 5.0

Callback = Callable[[str], None]


def libpq_url(database_url: str) -> str:
    """A libpq URL for psycopg from the service's (async) SQLAlchemy URL of the database."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class Notifications:
    """LISTEN on one connection; NOTIFY payloads to the callbacks of their channel."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._callbacks: dict[str, list[Callback]] = {}
        self._on_reconnect: list[Callable[[], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        # Reconnections so far (tests and logs).
        self.reconnects = 0
        # The backend serving the connection (pg_backend_pid()), while connected.
        self.backend_pid: int | None = None

    def listen(self, channel: str, callback: Callback) -> None:
        """Call `callback` with each payload NOTIFYed on `channel`; effective at once before
        start(), within POLL_SECONDS after."""
        self._callbacks.setdefault(channel, []).append(callback)

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call `callback` after each reconnection (not the first connection), once every
        channel is listened to again: what was notified in between was lost."""
        self._on_reconnect.append(callback)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Connect and listen, retrying with backoff until it works. Idempotent."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="notifications")
        await self._connected.wait()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._connected.clear()

    async def wait_connected(self) -> None:
        await self._connected.wait()

    async def _run(self) -> None:
        backoff = BACKOFF_MIN_SECONDS
        first = True
        while True:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                    conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                async with conn:
                    listening = await self._listen_all(conn, set())
                    self.backend_pid = conn.info.backend_pid
                    self._connected.set()
                    if first:
                        first = False
                    else:
                        self.reconnects += 1
                        log.info("notifications_reconnected", reconnects=self.reconnects)
                        self._call_reconnect_callbacks()
                    backoff = BACKOFF_MIN_SECONDS
                    await self._follow(conn, listening)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                was_connected = self._connected.is_set()
                self._connected.clear()
                self.backend_pid = None
                log.warning(
                    "notifications_connection_lost"
                    if was_connected
                    else "notifications_no_connection",
                    error=f"{type(exc).__name__}: {exc}".strip(),
                    retry_in=round(backoff, 2),
                )
            await asyncio.sleep(backoff * random.uniform(1.0, 1.5))  # noqa: S311 (jitter)
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

    async def _listen_all(
        self, conn: psycopg.AsyncConnection[object], listening: set[str]
    ) -> set[str]:
        for channel in list(self._callbacks):
            if channel not in listening:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                listening.add(channel)
        return listening

    async def _follow(self, conn: psycopg.AsyncConnection[object], listening: set[str]) -> None:
        """Hand notifications to their callbacks until the connection fails."""
        loop = asyncio.get_running_loop()
        checked_at = loop.time()
        while True:
            await self._listen_all(conn, listening)
            async for notify in conn.notifies(timeout=POLL_SECONDS):
                for callback in self._callbacks.get(notify.channel, ()):
                    try:
                        callback(notify.payload)
                    except Exception:
                        log.exception("notification_callback_failed", channel=notify.channel)
            if loop.time() - checked_at >= HEALTH_SECONDS:
                # A connection whose peer vanished without a word raises nothing by itself.
                async with asyncio.timeout(HEALTH_TIMEOUT_SECONDS):
                    await conn.execute("SELECT 1")
                checked_at = loop.time()

    def _call_reconnect_callbacks(self) -> None:
        for callback in self._on_reconnect:
            try:
                callback()
            except Exception:
                log.exception("notification_reconnect_callback_failed")
