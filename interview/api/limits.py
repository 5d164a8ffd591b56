"""Limits on abuse at the API's door: per-client rate limits on new interviews and answers (the
`limits` library), and a cap on a session's open event streams.

A client is the address the outermost trusted proxy saw (`client_address`): behind proxies
that append to X-Forwarded-For or Forwarded, only the entries they wrote are believed. An IPv6
client is counted by its /64, the block one subscriber gets, so rotating addresses within it
does not multiply the limit.

Rate limits are fixed windows: in this process on SQLite (one instance), in PostgreSQL on
PostgreSQL (interview.store.rate_limits), where every instance counts into the same window. A
request is counted before anything of it is written. When the counters cannot be reached the
request goes on (logged): the limits protect the database, and a request that needs the same
database gets its own 503 if it is down, while one limiter fault alone does not stop
interviews.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import structlog
from fastapi import Depends, Request
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import Scope

from interview.config import Settings
from interview.store import Store
from interview.store.rate_limits import PostgresRateLimitStorage

log = structlog.get_logger(__name__)

Action = Literal["start", "answer"]


class RateLimited(Exception):
    """The client has used its requests of this kind for the current window."""

    def __init__(self, action: Action, limit: str, retry_after: int) -> None:
        super().__init__(f"{action}: {limit}")
        self.action = action
        self.limit = limit
        self.retry_after = retry_after


class TooManyStreams(Exception):
    """The session has as many event streams open on this instance as it may."""

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(f"{limit} open event streams")
        self.limit = limit
        self.retry_after = retry_after


# -- who the client is -------------------------------------------------------------------------


def client_address(scope: Scope, header: str, hops: int) -> str:
    """The client as the rate limits count it: an IPv4 address, an IPv6 /64, or (for what is no
    address, such as a test client's name) a short digest of it.

    `hops` 0: the connection's address, as the server gave it (uvicorn has already replaced it
    with X-Forwarded-For's when the peer is in FORWARDED_ALLOW_IPS). `hops` N: the N-th entry
    from the end of `header` ("x-forwarded-for" or "forwarded"), which the outermost of N
    trusted proxies appended; with fewer entries than that, the connection's address.
    """
    if hops > 0:
        entries = _header_entries(scope, header)
        if len(entries) >= hops:
            found = _address(entries[-hops])
            if found is not None:
                return found
    client = scope.get("client")
    host = client[0] if client else ""
    return _address(host) or "name:" + hashlib.sha256(host.encode()).hexdigest()[:32]


def _header_entries(scope: Scope, header: str) -> list[str]:
    # Every line of the header in order, split at every comma. Deliberately not quote-aware: a
    # client can only write on the left, and an open quote of its own must not swallow the
    # entries the proxies appended after it.
    name = header.encode()
    joined = ",".join(
        value.decode("latin-1") for key, value in scope["headers"] if key.lower() == name
    )
    if not joined:
        return []
    entries = [entry.strip() for entry in joined.split(",")]
    if header == "forwarded":
        return [_forwarded_for(element) for element in entries]
    return entries


def _forwarded_for(element: str) -> str:
    """The `for=` of one RFC 7239 element (`for=192.0.2.60;proto=https;by=...`), or ""."""
    for pair in element.split(";"):
        key, _, value = pair.partition("=")
        if key.strip().lower() == "for":
            return value.strip().strip('"')
    return ""


def _address(value: str) -> str | None:
    """The address in `value` (`203.0.113.7`, `203.0.113.7:4711`, `[2001:db8::1]:4711`, ...),
    IPv6 as its /64; None when it is no address."""
    host = value.strip()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:
        host = host.partition(":")[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


# -- rate limits -------------------------------------------------------------------------------


class RateLimits:
    """The windows of each action, counted per client in `storage`."""

    def __init__(
        self,
        storage: Storage,
        rules: Mapping[Action, Sequence[RateLimitItem]],
        header: str = "x-forwarded-for",
        hops: int = 0,
    ) -> None:
        self.storage = storage
        self.rules = rules
        self.header = header
        self.hops = hops
        self._limiter = FixedWindowRateLimiter(storage)

    @classmethod
    def build(cls, settings: Settings, store: Store) -> RateLimits | None:
        """From Settings, on the service's database; None when RATE_LIMIT_ENABLED is off."""
        if not settings.rate_limit_enabled:
            return None
        storage: Storage = (
            PostgresRateLimitStorage(store.engine) if store.is_postgres else MemoryStorage()
        )
        rules: dict[Action, Sequence[RateLimitItem]] = {
            "start": parse_many(settings.rate_limit_start),
            "answer": parse_many(settings.rate_limit_answers),
        }
        return cls(storage, rules, settings.client_address_header, settings.trusted_proxy_hops)

    def client(self, scope: Scope) -> str:
        return client_address(scope, self.header, self.hops)

    async def hit(self, action: Action, client: str) -> None:
        """Count one request of `client`; RateLimited when one of the action's windows is full.

        A full window counts no further; the ones before it in the rule did count this one.
        """
        for item in self.rules[action]:
            try:
                if await self._limiter.hit(item, action, client):
                    continue
                reset = (await self._limiter.get_window_stats(item, action, client)).reset_time
            except (SQLAlchemyError, OSError, StorageError) as exc:
                log.warning("rate_limit_unavailable", action=action, error=type(exc).__name__)
                return
            retry_after = max(1, math.ceil(reset - time.time()))
            log.info("rate_limited", action=action, limit=str(item), retry_after=retry_after)
            raise RateLimited(action, str(item), retry_after)


# -- open event streams ------------------------------------------------------------------------


@dataclass(eq=False)
class _Slot:
    opened_at: float


class StreamSlots:
    """At most `per_session` open event streams per session in this process.

    `open()` takes a slot and returns what gives it back (idempotent: call it whatever way the
    stream ended). Every stream ends within `stream_seconds` of its start, so the oldest one's
    end tells a refused client when to retry.
    """

    def __init__(self, per_session: int, stream_seconds: float) -> None:
        self.per_session = per_session
        self.stream_seconds = stream_seconds
        self._open: dict[str, set[_Slot]] = {}

    def open(self, session_id: str) -> Callable[[], None]:
        now = time.monotonic()
        slots = self._open.setdefault(session_id, set())
        if len(slots) >= self.per_session:
            oldest = min(slot.opened_at for slot in slots)
            retry_after = max(1, math.ceil(oldest + self.stream_seconds - now))
            raise TooManyStreams(self.per_session, retry_after)
        slot = _Slot(now)
        slots.add(slot)

        def close() -> None:
            held = self._open.get(session_id)
            if held is None or slot not in held:
                return
            held.discard(slot)
            if not held:
                del self._open[session_id]

        return close

    def count(self, session_id: str) -> int:
        return len(self._open.get(session_id, ()))


# -- the app's limits, and the routes' dependencies ----------------------------------------------


@dataclass
class Limits:
    rates: RateLimits | None
    streams: StreamSlots

    @classmethod
    def build(cls, settings: Settings, store: Store) -> Limits:
        return cls(
            rates=RateLimits.build(settings, store),
            streams=StreamSlots(settings.events_max_streams, settings.events_stream_seconds),
        )


def get_limits(request: Request) -> Limits:
    limits: Limits = request.app.state.limits  # Starlette's state is untyped; app.py sets it
    return limits


async def _hit(request: Request, limits: Limits, action: Action) -> None:
    if limits.rates is not None:
        await limits.rates.hit(action, limits.rates.client(request.scope))


async def limit_start(request: Request, limits: Annotated[Limits, Depends(get_limits)]) -> None:
    """A route dependency: one new interview of this client's."""
    await _hit(request, limits, "start")


async def limit_answers(request: Request, limits: Annotated[Limits, Depends(get_limits)]) -> None:
    """A route dependency: one answer of this client's."""
    await _hit(request, limits, "answer")
