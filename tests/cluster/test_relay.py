"""The relay mailbox on a real PostgreSQL: one instance asks, another carries it out and answers;
failures and timeouts reach the asker as such, and no row is left behind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select, text

from interview.cluster import relay as relay_module
from interview.cluster.relay import Relay, RelayFailed, RelayTimeout
from interview.store import Store
from interview.store.tables import RelayRow
from tests.cluster.conftest import add_session


class Owner:
    """Instance "a": serves what is relayed to it, recording each request."""

    def __init__(self, store: Store) -> None:
        self.relay = Relay(store.engine, "a")
        self.seen: list[tuple[str, str, dict[str, Any]]] = []
        self.busy = True
        self.hang = asyncio.Event()
        self.hung = False

    async def handle(self, kind: str, session_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.seen.append((kind, session_id, payload))
        if kind == "explode":
            raise RuntimeError("boom")
        if kind == "hang":
            self.hung = True
            await self.hang.wait()
        return {"echo": payload, "kind": kind}


@pytest.fixture
async def owner(pg_store: Store) -> AsyncIterator[Owner]:
    owner = Owner(pg_store)
    task = asyncio.create_task(owner.relay.serve(owner.handle, busy=lambda: owner.busy))
    yield owner
    owner.hang.set()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await owner.relay.settle()


async def pending_rows(store: Store) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(RelayRow))).scalar_one())


async def test_a_request_is_carried_out_by_its_addressee_and_answered(
    pg_store: Store, owner: Owner
):
    sid = await add_session(pg_store)
    asker = Relay(pg_store.engine, "b")
    started = time.perf_counter()
    result = await asker.ask("a", sid, "ice_candidate", {"candidate": "c", "n": 1}, wait=5)
    took = time.perf_counter() - started
    assert result == {"echo": {"candidate": "c", "n": 1}, "kind": "ice_candidate"}
    assert owner.seen == [("ice_candidate", sid, {"candidate": "c", "n": 1})]
    # Polled every 0.1 s while the owner is busy: well under a second, however loaded.
    assert took < 1.0, took
    assert await pending_rows(pg_store) == 0  # the asker removed its row


async def test_requests_for_another_instance_are_left_alone(pg_store: Store, owner: Owner):
    sid = await add_session(pg_store)
    with pytest.raises(RelayTimeout):
        await Relay(pg_store.engine, "b").ask("c", sid, "answer", {}, wait=0.5)
    assert owner.seen == []
    assert await pending_rows(pg_store) == 0  # withdrawn at the timeout


async def test_many_requests_at_once_are_each_answered_once(pg_store: Store, owner: Owner):
    sids = [await add_session(pg_store, f"s{i}") for i in range(5)]
    asker = Relay(pg_store.engine, "b")
    results = await asyncio.gather(
        *(asker.ask("a", sid, "answer", {"i": i}, wait=5) for i, sid in enumerate(sids))
    )
    assert [r["echo"]["i"] for r in results] == list(range(5))
    assert sorted(s[1] for s in owner.seen) == sids  # none twice


async def test_a_hung_addressee_times_out_and_a_slow_one_does_not_block_others(
    pg_store: Store, owner: Owner
):
    sid = await add_session(pg_store)
    asker = Relay(pg_store.engine, "b")
    hanging = asyncio.create_task(asker.ask("a", sid, "hang", {}, wait=1.0))
    # While one request hangs on the owner, another is answered.
    assert (await asker.ask("a", sid, "answer", {"x": 1}, wait=5))["echo"] == {"x": 1}
    started = time.perf_counter()
    with pytest.raises(RelayTimeout, match="did not answer within 1 s"):
        await hanging
    assert time.perf_counter() - started < 1.5
    assert owner.hung
    owner.hang.set()  # it finishes late: its result goes nowhere, and nothing breaks
    await owner.relay.settle()
    assert await pending_rows(pg_store) == 0


async def test_a_failing_handler_is_a_failure_for_the_asker(pg_store: Store, owner: Owner):
    sid = await add_session(pg_store)
    with pytest.raises(RelayFailed, match="RuntimeError: boom"):
        await Relay(pg_store.engine, "b").ask("a", sid, "explode", {}, wait=5)


async def test_an_idle_addressee_still_answers_within_its_idle_poll(pg_store: Store, owner: Owner):
    owner.busy = False
    await asyncio.sleep(relay_module.BUSY_POLL_SECONDS * 2)  # now in its idle wait
    sid = await add_session(pg_store)
    started = time.perf_counter()
    await Relay(pg_store.engine, "b").ask("a", sid, "answer", {}, wait=5)
    assert time.perf_counter() - started < relay_module.IDLE_POLL_SECONDS + 0.5


async def test_a_wake_makes_the_addressee_look_at_once(pg_store: Store, owner: Owner):
    """What a LISTEN/NOTIFY callback would do: the idle owner's poll is cut short."""
    owner.busy = False
    await asyncio.sleep(relay_module.BUSY_POLL_SECONDS * 2)
    sid = await add_session(pg_store)
    asker = Relay(pg_store.engine, "b")
    asking = asyncio.create_task(asker.ask("a", sid, "answer", {}, wait=5))
    started = time.perf_counter()
    await asyncio.sleep(0.05)  # the row is in
    owner.relay.wake()
    await asking
    assert time.perf_counter() - started < relay_module.IDLE_POLL_SECONDS / 2


async def test_old_rows_are_pruned_and_a_deleted_session_takes_its_rows(
    pg_store: Store, owner: Owner, monkeypatch: pytest.MonkeyPatch
):
    sid = await add_session(pg_store)
    async with pg_store.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO interview_relay (session_id, instance, kind, payload, created_at) "
                "VALUES (:sid, 'gone', 'answer', '{}', now() - interval '1 hour'), "
                "(:sid, 'gone', 'answer', '{}', now())"
            ),
            {"sid": sid},
        )
    monkeypatch.setattr(relay_module, "PRUNE_EVERY_SECONDS", 0.0)
    async with asyncio.timeout(5):
        while await pending_rows(pg_store) != 1:  # noqa: ASYNC110 - the database changes
            await asyncio.sleep(0.05)
    async with pg_store.engine.begin() as conn:
        await conn.execute(text("DELETE FROM interview_sessions WHERE id = :sid"), {"sid": sid})
    assert await pending_rows(pg_store) == 0
