"""Interrupted interviewer lines in both pages, in Debian's Chromium against a real server: a
line the candidate cut shows the words played, "…" and "(interrupted)", a withdrawn line is
struck through with "(withdrawn)", and a check-in reads as an ordinary line.

The lines are interrupted through the store's own API (Store.update_turn/add_turn, as the
service will write them once the voice pipeline cuts a line) on the database of a real server
process; the pages then read them over the real API (React: /transcript and /events after the
server restarts on that database; Gradio: its next refresh after a real event of the session).

Sync Playwright tests: this module holds no async test (see tests/e2e/browser_fixtures.py).
Screenshots go to test-artifacts/screenshots/interrupted-*.png.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from harness.app_server import AppServer
from harness.browser import RequestLog, save_screenshot
from interview.config import to_async_database_url
from interview.domain import Interruption, Role, TurnKind, TurnSource
from interview.store import Store, TurnRow
from tests.api.helpers import auth

UI_READY_SECONDS = 120
STEP_MS = 60_000
FIRST_ANSWER = (
    "I led the rewrite of our billing service in Python, moved it to PostgreSQL and cut "
    "invoice errors by half."
)
SECOND_ANSWER = "I start from the logs and the metrics, then reproduce it locally with a test."
THIRD_ANSWER = "Mostly structured logs, traces and a debugger attached to a staging copy."
CHECK_IN = "Take your time; tell me when you're ready."


def database_url(directory: Path) -> str:
    return f"sqlite:///{directory}/spool.db"


def store_call(url: str, work: Callable[[Store], Awaitable[Any]]) -> Any:
    """Run `work` with a Store on the server's database, in a thread of its own: sync
    Playwright holds an event loop on this one (tests/e2e/browser_fixtures.py)."""

    async def run() -> Any:
        store = Store(to_async_database_url(url))
        try:
            return await work(store)
        finally:
            await store.dispose()

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, run()).result(timeout=60)


def cut_line(url: str, session_id: str, index: int) -> tuple[str, str]:
    """Interrupt the interviewer's line `index` as a barge-in does: `text` becomes the words
    played (its first few), `planned_text` the whole line. Returns (played, whole)."""

    async def work(store: Store) -> tuple[str, str]:
        turns = {t.index: t for t in await store.list_turns(session_id)}
        whole = turns[index].text
        assert turns[index].role == Role.interviewer
        words = whole.split()
        assert len(words) >= 6, whole
        played = " ".join(words[:4]) + ","
        await store.update_turn(
            session_id,
            index,
            text=played,
            interruption=Interruption.barge_in,
            planned_text=whole,
        )
        return played, whole

    result: tuple[str, str] = store_call(url, work)
    return result


def withdraw_line(url: str, session_id: str, index: int) -> str:
    """Withdraw the interviewer's line `index`: kept for the record, not said."""

    async def work(store: Store) -> str:
        turn = next(t for t in await store.list_turns(session_id) if t.index == index)
        assert turn.role == Role.interviewer
        await store.update_turn(session_id, index, interruption=Interruption.withdrawn)
        return turn.text

    text: str = store_call(url, work)
    return text


def add_check_in(url: str, session_id: str) -> int:
    """The interviewer's check-in after a long silence, as the next turn."""

    async def work(store: Store) -> int:
        index = await store.count_turns(session_id)
        now = datetime.now(UTC)
        row = TurnRow(
            session_id=session_id,
            index=index,
            role=Role.interviewer,
            kind=TurnKind.check_in,
            text=CHECK_IN,
            source=TurnSource.voice,
            question_index=None,
            started_at=now,
            ended_at=now,
        )
        await store.add_turn(row)
        return index

    index: int = store_call(url, work)
    return index


def visible_text(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AppServer]:
    """The service with voice off (as AppServer starts it) on a SQLite file of its own."""
    server = AppServer(tmp_path / "server.log", {"DATABASE_URL": database_url(tmp_path)})
    server.start()
    yield server
    server.stop()


def test_react_page_shows_interrupted_withdrawn_and_check_in_lines(
    server: AppServer, browser: Browser, tmp_path: Path
) -> None:
    url = database_url(tmp_path)
    api = httpx.Client(base_url=server.api, timeout=10)
    started = api.post("/start", json={"user_id": "interrupted-ui-test"}).json()
    sid, headers = started["session_id"], auth(started["token"])
    for answer in (FIRST_ANSWER, SECOND_ANSWER):
        assert api.post(f"/{sid}/transcript", json={"text": answer}, headers=headers).is_success
    # Turns: 0 interviewer, 1 answer, 2 interviewer, 3 answer, 4 interviewer.
    # The server stops while the lines are rewritten: the restarted one replays no live event
    # of before, so what the page shows comes from the stored turns alone.
    server.stop()
    played, whole = cut_line(url, sid, 2)
    withdrawn = withdraw_line(url, sid, 4)
    check_in = add_check_in(url, sid)
    server.start()
    turns = api.get(f"/{sid}/transcript", headers=headers).json()["turns"]
    assert [(t["index"], t["interruption"]) for t in turns if t["interruption"]] == [
        (2, "barge_in"),
        (4, "withdrawn"),
    ]
    assert turns[2]["planned_text"] == whole
    assert turns[check_in]["kind"] == "check_in"

    context = browser.new_context(viewport={"width": 1000, "height": 1100})
    requests = RequestLog.attach(context)
    page = context.new_page()
    page.set_default_timeout(STEP_MS)
    try:
        page.goto(f"{server.base_url}/demo/#session={sid}&token={started['token']}")
        page.get_by_role("button", name="Start interview").click()
        transcript = page.get_by_test_id("transcript")
        expect(transcript.locator("li")).to_have_count(len(turns))
        # Voice is off on this server: the page says so and keeps the transcript and typing.
        expect(page.get_by_test_id("error")).to_have_attribute(
            "data-error-kind", "voice_unavailable"
        )

        items = transcript.locator("li")
        cut = items.nth(2)
        expect(cut).to_have_attribute("data-interruption", "barge_in")
        expect(cut).to_have_attribute("data-role", "interviewer")
        played_shown = played.rstrip(",") + "…"
        expect(cut).to_have_text(
            re.compile(rf"^Interviewer{re.escape(played_shown)} \(interrupted\)$")
        )
        # Only the words played: the rest of the planned line is not shown as said.
        rest = whole.split()[4:]
        assert not any(word in (cut.text_content() or "").split() for word in rest[-2:])
        expect(cut.get_by_test_id("interruption")).to_be_visible()
        # The marker is part of the item's accessible text.
        expect(page.get_by_role("listitem").filter(has_text="(interrupted)")).to_have_count(1)

        gone = items.nth(4)
        expect(gone).to_have_attribute("data-interruption", "withdrawn")
        expect(gone.locator("del")).to_have_text(withdrawn)
        expect(gone.get_by_test_id("interruption")).to_have_text("(withdrawn)")
        decoration = gone.locator("del").evaluate("e => getComputedStyle(e).textDecorationLine")
        assert "line-through" in decoration

        shown_check_in = items.nth(check_in)
        expect(shown_check_in).to_have_attribute("data-kind", "check_in")
        expect(shown_check_in).to_have_attribute("data-interruption", "none")
        expect(shown_check_in).to_have_text(f"Interviewer{CHECK_IN}")
        # Lines heard whole carry no marker.
        for index in (0, 1, 3):
            expect(items.nth(index)).to_have_attribute("data-interruption", "none")
        expect(transcript.get_by_test_id("interruption")).to_have_count(2)
        save_screenshot(page, "interrupted-react")

        # The interview goes on: a typed answer and the next line come in live, after them.
        page.get_by_label("Type your answer instead").fill(THIRD_ANSWER)
        page.get_by_role("button", name="Send answer").click()
        expect(items).to_have_count(len(turns) + 2)
        expect(items.nth(len(turns))).to_contain_text(THIRD_ANSWER)
        expect(cut).to_have_attribute("data-interruption", "barge_in")
        expect(transcript.get_by_test_id("interruption")).to_have_count(2)
        assert requests.external() == []
    finally:
        context.close()
        api.close()


def wait_for_ui(server: AppServer) -> None:
    deadline = time.monotonic() + UI_READY_SECONDS
    while httpx.get(f"{server.base_url}/ui/", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the UI was not built in time:\n" + server.log()[-3000:]
        time.sleep(0.5)


def session_of(page: Page) -> tuple[str, str]:
    """The session id and API token the page shows under "Use this session from the API"."""
    text = page.locator("#session").text_content() or ""
    match = re.search(r"Session (\S+) \(plan.*token: (\S+)", text)
    assert match, text
    return match.group(1), match.group(2)


def type_answer(page: Page, answer: str) -> None:
    page.locator("#answer textarea").fill(answer)
    page.locator("#answer textarea").press("Enter")
    expect(page.locator("#transcript")).to_contain_text(answer, timeout=STEP_MS)
    expect(page.locator("#answer textarea")).to_have_value("")


def test_gradio_page_shows_interrupted_and_withdrawn_lines(
    server: AppServer, browser: Browser, tmp_path: Path
) -> None:
    url = database_url(tmp_path)
    wait_for_ui(server)
    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    requests = RequestLog.attach(context)
    page = context.new_page()
    page.set_default_timeout(STEP_MS)
    try:
        page.goto(f"{server.base_url}/ui/")
        page.locator("#start").click()
        expect(page.locator("#status")).to_contain_text("Interview created", timeout=STEP_MS)
        sid, token = session_of(page)
        type_answer(page, FIRST_ANSWER)
        messages = page.locator("#transcript .message-row")
        expect(messages).to_have_count(3)

        # The line the page shows as turn 2 is cut while the server runs; the page shows it so
        # at its next refresh after a real event of the session (the next answer, here).
        played, whole = cut_line(url, sid, 2)
        type_answer(page, SECOND_ANSWER)
        expect(messages).to_have_count(5)
        cut = messages.nth(2)
        played_shown = played.rstrip(",") + "…"
        expect(cut).to_have_text(
            re.compile(rf"^\s*{re.escape(played_shown)} \(interrupted\)\s*$"), timeout=STEP_MS
        )
        expect(cut.locator("em")).to_have_text("(interrupted)")
        assert whole.split()[-1] not in visible_text(cut.text_content() or "")

        withdrawn = withdraw_line(url, sid, 4)
        type_answer(page, THIRD_ANSWER)
        expect(messages).to_have_count(7)
        gone = messages.nth(4)
        expect(gone.locator("del")).to_have_text(withdrawn, timeout=STEP_MS)
        expect(gone.locator("em")).to_have_text("(withdrawn)")
        decoration = gone.locator("del").evaluate("e => getComputedStyle(e).textDecorationLine")
        assert "line-through" in decoration
        # Lines heard whole and the answers carry no marker.
        expect(page.locator("#transcript del")).to_have_count(1)
        expect(page.locator("#transcript em", has_text="(interrupted)")).to_have_count(1)
        save_screenshot(page, "interrupted-gradio")

        response = httpx.get(f"{server.api}/{sid}/transcript", headers=auth(token), timeout=10)
        stored = response.json()["turns"]
        assert [(t["index"], t["interruption"]) for t in stored if t["interruption"]] == [
            (2, "barge_in"),
            (4, "withdrawn"),
        ]
        assert requests.external() == []
    finally:
        context.close()
