"""`python -m interview.admin`, run as an operator runs it (a process of its own) against real
SQLite and PostgreSQL databases: purge by age (or count, dry), delete one, exit statuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.app_server import ENGINE_AND_SERVICE_ENV
from interview.admin.erasure import parse_age
from interview.config import to_async_database_url
from interview.store import Store
from tests.store.test_erasure import full_interview, rows_of

ROOT = Path(__file__).resolve().parents[1]


def admin(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENGINE_AND_SERVICE_ENV)}
    env["DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "interview.admin", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def result(done: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    return json.loads(line)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    store = Store(to_async_database_url(database_url))
    await store.migrate()
    yield store
    await store.dispose()


async def test_purge_counts_then_erases_the_interviews_older_than_the_age(
    store: Store, database_url: str
):
    now = datetime.now(UTC)
    for session_id, days in (("old1", 45), ("old2", 31), ("recent", 29)):
        await full_interview(store, session_id, ended_at=now - timedelta(days=days))
    await full_interview(store, "live")
    kept = {sid: await rows_of(store, sid) for sid in ("recent", "live")}

    dry = result(admin(database_url, "purge", "--older-than", "30d", "--dry-run"))
    assert dry["command"] == "purge" and dry["would_erase"] == 2
    assert await store.count_sessions_ended_before(now - timedelta(days=30)) == 2

    done = result(admin(database_url, "purge", "--older-than", "30d"))
    assert done["erased"] == 2
    for gone in ("old1", "old2"):
        assert set((await rows_of(store, gone)).values()) == {0}
    for sid, before in kept.items():
        assert await rows_of(store, sid) == before
    # Nothing left to purge: fine, and says so.
    assert result(admin(database_url, "purge", "--older-than", "720h"))["erased"] == 0


async def test_delete_erases_one_interview_live_or_ended(store: Store, database_url: str):
    await full_interview(store, "live")
    await full_interview(store, "ended", ended_at=datetime.now(UTC))
    await full_interview(store, "other")
    other = await rows_of(store, "other")

    for sid in ("live", "ended"):
        done = result(admin(database_url, "delete", sid))
        assert done == {"command": "delete", "session_id": sid, "erased": True}
        assert set((await rows_of(store, sid)).values()) == {0}
    assert await rows_of(store, "other") == other

    again = admin(database_url, "delete", "live")
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.splitlines() == ["error: no interview 'live' (never existed, or erased)"]


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("purge",),
        ("purge", "--older-than", "30"),
        ("purge", "--older-than", "30 days"),
        ("purge", "--older-than", "-1d"),
        ("delete",),
        ("erase", "x"),
    ],
)
def test_bad_arguments_exit_2(args: tuple[str, ...], tmp_path: Path):
    done = admin(f"sqlite:///{tmp_path}/spool.db", *args)
    assert done.returncode == 2 and done.stdout == ""
    assert "usage: python -m interview.admin" in done.stderr


def test_an_unreachable_database_fails_in_one_line(tmp_path: Path):
    # Port 1 on the loopback: nothing listens, the connection is refused at once.
    done = admin("postgresql://postgres@127.0.0.1:1/spool", "purge", "--older-than", "1d")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == ["error: the database is unavailable (OperationalError)"]
    bad = admin("mysql://db/spool", "delete", "x")
    assert bad.returncode == 1
    assert bad.stderr.splitlines() == [
        "error: DATABASE_URL must be sqlite or postgresql, not 'mysql'"
    ]


def test_ages():
    assert parse_age("12h") == timedelta(hours=12)
    assert parse_age("90d") == timedelta(days=90)
    assert parse_age("8w") == timedelta(weeks=8)
    assert parse_age("0d") == timedelta(0)
    for wrong in ("", "d", "1.5d", "30m", "1y", "-1d", "30dd"):
        with pytest.raises(ValueError):
            parse_age(wrong)
