"""Which instance holds each session's voice connection (`interview_sessions.owner_instance`), and
asking that instance to act on it through the relay.

The media of a session is pinned to the instance that accepted its offer; every other instance
serves the session's REST calls and relays what only the owner can do: an ICE candidate, the
answer to its offer, and giving the session up for a new offer. On SQLite (one process) this
process owns everything and nothing is recorded.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from interview.cluster.instances import InstanceRegistry
from interview.cluster.relay import Relay, RelayFailed, RelayTimeout
from interview.store.tables import SessionRow
from interview.voice.errors import (
    AlreadyConnected,
    InvalidCandidate,
    InvalidOffer,
    NoConnection,
    OwnerUnreachable,
)

log = structlog.get_logger(__name__)

# How long a relayed request waits for the owner: shorter than a dead owner takes to be noticed
# (INSTANCE_DEAD_AFTER_SECONDS, 10 s by default), so the client's retry finds it dead.
RELAY_TIMEOUT_SECONDS = 5.0

# The errors the owner's answer may carry, raised again where the request came in: the client
# gets the same response as from the owner itself.
_ERRORS: dict[str, type[Exception]] = {
    "already_connected": AlreadyConnected,
    "no_connection": NoConnection,
    "invalid_candidate": InvalidCandidate,
    "invalid_offer": InvalidOffer,
}
_CODES = {kind: code for code, kind in _ERRORS.items()}


class MediaOwnership:
    def __init__(self, engine: AsyncEngine, instances: InstanceRegistry, relay: Relay) -> None:
        self.instances = instances
        self.relay = relay
        self.shared = instances.shared
        self._engine = engine

    @property
    def me(self) -> str:
        return self.instances.id

    async def owner(self, session_id: str) -> str | None:
        """The instance recorded as holding the session's connection (None: no one)."""
        if not self.shared:
            return None
        async with self._engine.connect() as conn:
            return (
                await conn.execute(
                    select(SessionRow.owner_instance).where(SessionRow.id == session_id)
                )
            ).scalar_one_or_none()

    async def remote_owner(self, session_id: str) -> str | None:
        """The other, live instance that holds the session's connection; None when it is this
        one's to handle (no owner, this instance, or a dead one)."""
        owner = await self.owner(session_id)
        if owner is None or owner == self.me or not await self.instances.alive(owner):
            return None
        return owner

    async def claim(self, session_id: str, replacing: str | None) -> bool:
        """Record this instance as the owner, if the owner is still `replacing` (or already this
        instance); False when another instance got there first."""
        if not self.shared:
            return True
        allowed = [SessionRow.owner_instance.is_(None), SessionRow.owner_instance == self.me]
        if replacing is not None:
            allowed.append(SessionRow.owner_instance == replacing)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id, or_(*allowed))
                .values(owner_instance=self.me)
            )
        return bool(result.rowcount)

    async def give_up(self, session_id: str) -> None:
        """This instance no longer holds the session's connection (only if it was the owner)."""
        if not self.shared:
            return
        async with self._engine.begin() as conn:
            await conn.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id, SessionRow.owner_instance == self.me)
                .values(owner_instance=None)
            )

    async def give_up_all(self) -> int:
        """This instance holds no connection any more (it stops); how many it gave up."""
        if not self.shared:
            return 0
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(SessionRow)
                .where(SessionRow.owner_instance == self.me)
                .values(owner_instance=None)
            )
        return int(result.rowcount)

    async def ask(
        self, owner: str, session_id: str, kind: str, payload: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Have the owner do `kind`; its result, or its error raised here as it was raised there.

        OwnerUnreachable when it does not answer in time or could not carry it out."""
        try:
            result = await self.relay.ask(
                owner, session_id, kind, payload or {}, RELAY_TIMEOUT_SECONDS
            )
        except RelayTimeout as exc:
            raise OwnerUnreachable(str(exc)) from exc
        except RelayFailed as exc:
            raise OwnerUnreachable(f"the instance holding the call failed: {exc}") from exc
        error = result.get("error")
        if isinstance(error, dict):
            kind_of_error = _ERRORS.get(str(error.get("code")))
            if kind_of_error is None:
                raise OwnerUnreachable(f"the instance holding the call answered {error}")
            raise kind_of_error(str(error.get("message", "")))
        return result


def error_result(exc: Exception) -> dict[str, Any] | None:
    """A voice error as the owner's relayed answer (None for one that is not relayed)."""
    code = _CODES.get(type(exc))
    if code is None:
        return None
    return {"error": {"code": code, "message": str(exc)}}
