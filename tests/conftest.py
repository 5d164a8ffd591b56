"""Fixtures for real servers (PostgreSQL, the app under uvicorn, coturn), and the test tiers:
each test marked with what it needs beyond the dev venv (tests/tiers.py), so `make check` runs
the rest (`-m "not slow"`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import httpx
import pytest
from _pytest.mark.expression import Expression  # how `-m` reads its expression

from harness import interview_model
from harness.app_server import ENGINE_AND_SERVICE_ENV, AppServer
from harness.fake_openai import FakeOpenAI
from harness.postgres import PostgresServer
from tests import tiers

BACKENDS = ["sqlite", tiers.POSTGRES_BACKEND]


def pytest_configure(config: pytest.Config) -> None:
    tiers.install_guard()


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """A directory whose tests `-m` would all deselect is not even imported (importing the CDK
    app starts Node.js)."""
    needs = tiers.needs_of_directory(collection_path)
    expression = config.getoption("markexpr")
    if not needs or not expression:
        return None
    marks = {tiers.SLOW, *needs}

    def marked(name: str, /, **_: object) -> bool:
        return name in marks

    selected = Expression.compile(expression).evaluate(marked)
    return True if not selected else None


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by these marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        declared = {m.name for m in item.iter_markers()}
        needs = (declared & set(tiers.NEEDS)) | tiers.needs_of_directory(item.path)
        if isinstance(item, pytest.Function):
            callspec = getattr(item, "callspec", None)
            needs |= tiers.needs_of_parameters(callspec.params if callspec else {})
            # Every fixture the test uses, directly or through others (the closest definition).
            fixtures = [defs[-1].func for defs in item._fixtureinfo.name2fixturedefs.values()]
            needs |= tiers.needs_of_code([item.obj, *fixtures])
        for need in sorted(needs - declared):
            item.add_marker(need)
        if needs:
            item.add_marker(tiers.SLOW)


def _held_to_its_tier(item: pytest.Item) -> AbstractContextManager[None]:
    """An unmarked test finds no model files and may not start a Debian program, Node.js or
    the service, on any machine: what it needs without saying so fails here and now. (Its
    teardown is free: it may end the session's servers that other tests started.)"""
    if item.get_closest_marker(tiers.SLOW) is not None:
        return nullcontext()
    return tiers.guarded(item.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with _held_to_its_tier(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _held_to_its_tier(item):
        return (yield)


@pytest.fixture(autouse=True)
def _no_engine_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings() built in a test reads the environment: an OPENAI_API_KEY exported in a
    developer's shell would turn the scripted interviewer into the LLM one there."""
    for name in list(os.environ):
        if name.upper().startswith(ENGINE_AND_SERVICE_ENV):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


def _database_url(backend: str, request: pytest.FixtureRequest, directory: str) -> str:
    if backend == "sqlite":
        return f"sqlite:///{directory}/spool.db"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh, empty database on each backend the service supports."""
    return _database_url(request.param, request, str(tmp_path))


@pytest.fixture(scope="session", params=BACKENDS)
def api_server(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[AppServer]:
    """One real server per backend, shared by the API tests (each test makes its own sessions)."""
    directory = tmp_path_factory.mktemp(f"api-{request.param}")
    server = AppServer(
        directory / "server.log",
        {"DATABASE_URL": _database_url(request.param, request, str(directory))},
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def api(api_server: AppServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.api, timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    """One local OpenAI-compatible server for the run (real HTTP on 127.0.0.1)."""
    server = FakeOpenAI()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_openai(fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The shared fake, emptied for this test, answering like a sensible interviewer model."""
    fake_openai_server.reset()
    fake_openai_server.chat.default = interview_model.respond
    yield fake_openai_server
    fake_openai_server.reset()
