"""A migrated database on the real PostgreSQL for the cluster's tests (no app server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from harness.postgres import PostgresServer
from interview.config import to_async_database_url
from interview.domain import ConnectionState, SessionStatus
from interview.store import SessionRow, Store


@pytest.fixture
async def pg_store(postgres_server: PostgresServer) -> AsyncIterator[Store]:
    store = Store(to_async_database_url(postgres_server.create_database()))
    await store.migrate()
    yield store
    await store.dispose()


async def add_session(store: Store, session_id: str = "s1") -> str:
    now = datetime.now(UTC)
    await store.insert_session(
        SessionRow(
            id=session_id,
            token_hash="0" * 64,
            user_id="u",
            plan_id="p",
            meta={},
            status=SessionStatus.created,
            created_at=now,
            expires_at=now + timedelta(hours=1),
            question_index=0,
            follow_ups_used=0,
            connection_state=ConnectionState.none,
        )
    )
    return session_id
