"""Ownership of a session's media on a real PostgreSQL: guarded claims and releases, who counts as
the owner to relay to, and the owner's answers (and errors) as the asking instance sees them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text

from interview.cluster import relay as relay_module
from interview.cluster.instances import InstanceRegistry
from interview.cluster.relay import Relay
from interview.config import Settings
from interview.store import Store
from interview.voice import ownership as ownership_module
from interview.voice.errors import (
    AlreadyConnected,
    InvalidCandidate,
    NoConnection,
    OwnerUnreachable,
)
from interview.voice.ownership import MediaOwnership, error_result
from tests.cluster.conftest import add_session
from tests.cluster.conftest import pg_store as pg_store  # the fixture


def instance(store: Store, name: str) -> MediaOwnership:
    settings = Settings(
        instance_id=name, instance_heartbeat_seconds=0.1, instance_dead_after_seconds=1.0
    )
    registry = InstanceRegistry(store.engine, settings)
    return MediaOwnership(store.engine, registry, Relay(store.engine, registry.id))


@pytest.fixture
async def pair(pg_store: Store) -> AsyncIterator[tuple[MediaOwnership, MediaOwnership]]:
    a, b = instance(pg_store, "a"), instance(pg_store, "b")
    a.instances.start()
    b.instances.start()
    async with asyncio.timeout(5):
        while not (await b.instances.alive("a") and await a.instances.alive("b")):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    yield a, b
    await a.instances.stop()
    await b.instances.stop()


async def test_claims_are_guarded(pg_store: Store, pair):
    a, b = pair
    sid = await add_session(pg_store)
    assert await a.owner(sid) is None
    assert await a.claim(sid, replacing=None)
    assert await a.owner(sid) == "a"
    assert await a.claim(sid, replacing=None)  # again: it is already a's
    # b may not take it while it believes no one has it, nor from someone else.
    assert not await b.claim(sid, replacing=None)
    assert not await b.claim(sid, replacing="c")
    assert await b.owner(sid) == "a"
    # b takes it from a when a is the owner it expects to replace (a dead one, or a's release).
    assert await b.claim(sid, replacing="a")
    assert await a.owner(sid) == "b"


async def test_only_the_owner_gives_a_session_up(pg_store: Store, pair):
    a, b = pair
    one, two = await add_session(pg_store, "one"), await add_session(pg_store, "two")
    assert await a.claim(one, replacing=None) and await a.claim(two, replacing=None)
    await b.give_up(one)  # not b's
    assert await a.owner(one) == "a"
    await a.give_up(one)
    assert await a.owner(one) is None
    assert await b.claim(one, replacing=None)
    assert await a.give_up_all() == 1  # only "two" was still a's
    assert (await a.owner(one), await a.owner(two)) == ("b", None)


async def test_the_remote_owner_is_another_live_instance(pg_store: Store, pair):
    a, b = pair
    sid = await add_session(pg_store)
    assert await b.remote_owner(sid) is None  # no one's: b handles it itself
    await a.claim(sid, replacing=None)
    assert await b.remote_owner(sid) == "a"
    assert await a.remote_owner(sid) is None  # its own
    await a.instances.stop()  # a clean stop removes a's row: dead at once
    assert await b.remote_owner(sid) is None


async def test_a_silent_owner_is_dead_after_the_dead_after_time(pg_store: Store):
    a, b = instance(pg_store, "a"), instance(pg_store, "b")
    sid = await add_session(pg_store)
    async with pg_store.engine.begin() as conn:
        # a beat 0.5 s ago, then was killed (its row stays).
        await conn.execute(
            text(
                "INSERT INTO interview_instances (id, started_at, heartbeat_at, draining) "
                "VALUES ('a', now(), now() - interval '0.5 seconds', false)"
            )
        )
    assert await a.claim(sid, replacing=None)
    assert await b.remote_owner(sid) == "a"
    await asyncio.sleep(0.6)
    assert await b.remote_owner(sid) is None


async def serve(owner: MediaOwnership, answers: dict[str, Any]) -> asyncio.Task[None]:
    async def handle(kind: str, session_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        outcome = answers[kind]
        if isinstance(outcome, Exception):
            return error_result(outcome) or {"error": {"code": "something_else"}}
        return dict(outcome)

    return asyncio.create_task(owner.relay.serve(handle, busy=lambda: True))


async def test_the_owners_answer_and_its_errors_reach_the_asker(pg_store: Store, pair):
    a, b = pair
    sid = await add_session(pg_store)
    task = await serve(
        a,
        {
            "answer": {"sdp": "v=0", "type": "answer"},
            "release": AlreadyConnected(),
            "ice_candidate": InvalidCandidate("the ICE candidate was refused: bad"),
            "gone": NoConnection("the connection for this session is closed"),
            "odd": ValueError("not a voice error"),
        },
    )
    try:
        assert await b.ask("a", sid, "answer") == {"sdp": "v=0", "type": "answer"}
        with pytest.raises(AlreadyConnected):
            await b.ask("a", sid, "release")
        with pytest.raises(InvalidCandidate, match="refused: bad"):
            await b.ask("a", sid, "ice_candidate", {"candidate": "x"})
        with pytest.raises(NoConnection, match="is closed"):
            await b.ask("a", sid, "gone")
        with pytest.raises(OwnerUnreachable):  # an answer it cannot read: retry
            await b.ask("a", sid, "odd")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_owner_that_does_not_answer_is_unreachable(
    pg_store: Store, pair, monkeypatch: pytest.MonkeyPatch
):
    _a, b = pair
    sid = await add_session(pg_store)
    monkeypatch.setattr(ownership_module, "RELAY_TIMEOUT_SECONDS", 0.3)
    with pytest.raises(OwnerUnreachable) as raised:
        await b.ask("a", sid, "release")  # nobody serves a's mailbox
    assert raised.value.state == "owner_unreachable"
    assert "did not answer within 0.3 s" in raised.value.detail


def test_the_relay_timeout_is_shorter_than_an_owners_death_takes_to_notice():
    # A client retrying after a timeout then finds the owner alive again, or dead.
    assert Settings().instance_dead_after_seconds > ownership_module.RELAY_TIMEOUT_SECONDS
    assert relay_module.IDLE_POLL_SECONDS < ownership_module.RELAY_TIMEOUT_SECONDS
