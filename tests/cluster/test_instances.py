"""The instance registry on a real PostgreSQL: this process's row, its heartbeat, draining and
clean stop, and which instances count as alive."""

from __future__ import annotations

import asyncio
import re
import uuid

import psycopg
from sqlalchemy import select, text

from harness.postgres import PostgresServer
from interview.cluster.instances import FORGET_AFTER_DEAD, InstanceRegistry, generated_id
from interview.config import Settings, to_async_database_url
from interview.store import Store
from interview.store.tables import InstanceRow

ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def settings(instance_id: str | None = None) -> Settings:
    return Settings(
        instance_id=instance_id, instance_heartbeat_seconds=0.1, instance_dead_after_seconds=1.0
    )


async def row_of(store: Store, instance_id: str) -> InstanceRow | None:
    async with store.engine.connect() as conn:
        found = (
            await conn.execute(select(InstanceRow).where(InstanceRow.id == instance_id))
        ).first()
    return None if found is None else InstanceRow(**found._mapping)


async def wait_for(condition, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        # The database is what changes: polled.
        while not await condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def test_a_generated_id_is_a_valid_instance_id_and_unique_per_process_start():
    made = generated_id("ip-10-0-1-23.ec2.internal", 4242)
    assert ID_PATTERN.match(made) and made.startswith("ip-10-0-1-23.ec2.internal-4242-")
    assert generated_id("ip-10-0-1-23.ec2.internal", 4242) != made  # a recycled pid differs
    odd = generated_id("héllo wörld/" + "x" * 100, 7)
    assert ID_PATTERN.match(odd), odd
    assert odd.endswith(odd.split("-7-")[-1]) and "-7-" in odd  # the pid and suffix are kept


async def test_start_beats_and_a_clean_stop_removes_the_row(pg_store: Store):
    registry = InstanceRegistry(pg_store.engine, settings(instance_id="alpha"))
    assert registry.id == "alpha" and registry.shared
    registry.start()
    try:
        await wait_for(lambda: _exists(pg_store, "alpha"))
        first = await row_of(pg_store, "alpha")
        assert first is not None and not first.draining
        await asyncio.sleep(0.35)  # a few beats
        later = await row_of(pg_store, "alpha")
        assert later is not None and later.heartbeat_at > first.heartbeat_at
        assert later.started_at == first.started_at  # an upsert keeps when it started

        await registry.set_draining()
        draining = await row_of(pg_store, "alpha")
        assert draining is not None and draining.draining
        # The row comes back with the next beat if something removed it.
        async with pg_store.engine.begin() as conn:
            await conn.execute(text("DELETE FROM interview_instances"))
        await wait_for(lambda: _exists(pg_store, "alpha"))
        back = await row_of(pg_store, "alpha")
        assert back is not None and back.draining
    finally:
        await registry.stop()
    assert await row_of(pg_store, "alpha") is None


async def test_alive_is_a_fresh_heartbeat_by_the_databases_clock(pg_store: Store):
    alpha = InstanceRegistry(pg_store.engine, settings(instance_id="alpha"))
    beta = InstanceRegistry(pg_store.engine, settings(instance_id="beta"))
    alpha.start()
    beta.start()
    try:
        await wait_for(lambda: _exists(pg_store, "beta"))
        assert await alpha.alive("beta") and await beta.alive("alpha")
        assert await alpha.alive("alpha")  # itself, always
        assert not await alpha.alive("never-started")

        # beta hangs: its heartbeat stops, and after the dead-after time it is dead.
        await beta.stop()
        async with pg_store.engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO interview_instances (id, started_at, heartbeat_at, draining) "
                    "VALUES ('beta', now(), now() - interval '0.9 seconds', false)"
                )
            )
        assert await alpha.alive("beta")
        await asyncio.sleep(0.2)
        assert not await alpha.alive("beta")
    finally:
        await alpha.stop()
        await beta.stop()


async def test_long_dead_instances_are_forgotten_by_the_living(pg_store: Store):
    registry = InstanceRegistry(pg_store.engine, settings(instance_id="alpha"))
    async with pg_store.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO interview_instances (id, started_at, heartbeat_at, draining) VALUES "
                "('crashed', now(), now(), false), ('recent', now(), now(), false)"
            )
        )
        # Dead (1 s) for FORGET_AFTER_DEAD times that, and a little more.
        await conn.execute(
            text(
                "UPDATE interview_instances SET heartbeat_at = now() - make_interval(secs => :s) "
                "WHERE id = 'crashed'"
            ),
            {"s": 1.0 * FORGET_AFTER_DEAD + 5},
        )
    registry.start()
    try:
        await wait_for(lambda: _gone(pg_store, "crashed"))
        assert await row_of(pg_store, "recent") is not None  # dead, but not for long
    finally:
        await registry.stop()


async def test_a_database_not_there_yet_is_retried_at_every_beat(
    postgres_server: PostgresServer,
):
    name = f"later_{uuid.uuid4().hex[:8]}"
    store = Store(to_async_database_url(postgres_server.url(name)))
    registry = InstanceRegistry(store.engine, settings(instance_id="alpha"))
    registry.start()  # every beat fails: the database does not exist
    try:
        await asyncio.sleep(0.3)
        assert registry._task is not None and not registry._task.done()
        with psycopg.connect(postgres_server.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        await store.migrate()
        await wait_for(lambda: _exists(store, "alpha"))
    finally:
        await registry.stop()
        await store.dispose()


async def test_on_sqlite_nothing_is_written_and_every_owner_is_this_process(tmp_path):
    store = Store(to_async_database_url(f"sqlite:///{tmp_path}/spool.db"))
    await store.migrate()
    registry = InstanceRegistry(store.engine, settings())
    try:
        assert not registry.shared and ID_PATTERN.match(registry.id)
        registry.start()
        await registry.set_draining()
        assert await registry.alive("anyone")
        async with store.engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM interview_instances"))).scalar()
        assert count == 0
    finally:
        await registry.stop()
        await store.dispose()


async def _exists(store: Store, instance_id: str) -> bool:
    return await row_of(store, instance_id) is not None


async def _gone(store: Store, instance_id: str) -> bool:
    return await row_of(store, instance_id) is None
