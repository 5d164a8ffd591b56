"""The Gradio demo UI in Debian's Chromium: renders offline, a typed turn, a spoken turn through
the browser microphone (a fake one playing an espeak-ng answer), End, and the results.

Sync Playwright in plain `def` tests only (see tests/e2e/browser_fixtures.py). Screenshots of the
main states go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, expect

from harness.app_server import AppServer
from harness.browser import RequestLog, save_screenshot, spoken_answer_wav
from tests.e2e.browser_fixtures import ChromiumLauncher
from tests.e2e.conftest import PLANS, recall

UI_READY_SECONDS = 120
FIRST_QUESTION = "Tell me about a project you are proud of."
NEXT_QUESTION = "How do you debug a failing service?"
TYPED_ANSWER = (
    "I led the rewrite of our billing service in Python, moved it to PostgreSQL and cut "
    "invoice errors by half."
)
SPOKEN_ANSWER = (
    "I am proud of the payments service I built last year with Python and Postgres. "
    "It handled a million requests a day."
)
# The fake microphone starts playing when the page opens it, just before the greeting is spoken:
# the answer waits long enough for a greeting that is already synthesized (the page says so
# before Talk is pressed) to connect and play, since the service does not listen meanwhile.
ANSWER_LEAD_SECONDS = 12.0
# Generous bounds for a loaded two-core machine; each wait ends as soon as its condition holds.
VOICE_READY_MS = 240_000
VOICE_TURN_MS = 180_000
STEP_MS = 60_000
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def wait_for_ui(server: AppServer) -> None:
    deadline = time.monotonic() + UI_READY_SECONDS
    while httpx.get(f"{server.base_url}/ui/", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "the UI was not built in time:\n" + server.log()[-3000:]
        time.sleep(0.5)


@pytest.fixture(scope="module")
def text_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """The service with voice off (as AppServer starts it) and the short test plans."""
    directory = tmp_path_factory.mktemp("gradio-text")
    server = AppServer(
        directory / "server.log",
        {
            "DATABASE_URL": f"sqlite:///{directory}/spool.db",
            "PLANS_DIR": str(PLANS),
            "DEFAULT_PLAN_ID": "quick-engineer",
        },
    )
    server.start()
    wait_for_ui(server)
    yield server
    server.stop()


def session_of(page: Page) -> tuple[str, str]:
    """The session id and API token the page shows under "Use this session from the API"."""
    text = page.locator("#session").text_content() or ""
    match = re.search(r"Session (\S+) \(plan.*token: (\S+)", text)
    assert match, text
    return match.group(1), match.group(2)


def api_turns(server: AppServer, page: Page) -> list[dict[str, str]]:
    session_id, token = session_of(page)
    response = httpx.get(
        f"{server.api}/{session_id}/transcript",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["turns"]


def start_interview(page: Page, server: AppServer) -> None:
    page.goto(f"{server.base_url}/ui/")
    expect(page.locator("#start")).to_be_visible(timeout=STEP_MS)
    page.locator("#start").click()
    expect(page.locator("#transcript")).to_contain_text(FIRST_QUESTION, timeout=STEP_MS)


def end_and_read_results(page: Page) -> None:
    page.locator("#end").click()
    expect(page.locator("#status")).to_contain_text("Interview ended (candidate)", timeout=STEP_MS)
    results = page.locator("#results")
    expect(results).to_contain_text("Interview report", timeout=STEP_MS)
    expect(results).to_contain_text("Quick engineering check (tests)")
    expect(results).to_contain_text("Questions covered")


def test_text_turn_offline_then_results(text_server: AppServer, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    requests = RequestLog.attach(context)
    page = context.new_page()
    try:
        page.goto(f"{text_server.base_url}/ui/")
        expect(page.locator("#start")).to_be_visible(timeout=STEP_MS)
        expect(page.locator("#voice-off")).to_contain_text("Voice is off on this server")
        expect(page.locator("#plan input")).to_have_value(re.compile(r"\(quick-engineer\)"))
        save_screenshot(page, "gradio-ui-ready")

        page.locator("#start").click()
        expect(page.locator("#transcript")).to_contain_text(FIRST_QUESTION, timeout=STEP_MS)
        expect(page.locator("#status")).to_contain_text("Interview created")

        page.locator("#answer textarea").fill(TYPED_ANSWER)
        page.locator("#answer textarea").press("Enter")
        transcript = page.locator("#transcript")
        expect(transcript).to_contain_text(TYPED_ANSWER, timeout=STEP_MS)
        expect(transcript).to_contain_text(NEXT_QUESTION, timeout=STEP_MS)
        expect(page.locator("#answer textarea")).to_have_value("")
        expect(page.locator("#status")).to_contain_text("Interview active")
        save_screenshot(page, "gradio-ui-text-turn")

        # The same turns, in the same order, through the REST API.
        turns = api_turns(text_server, page)
        assert [(t["role"], t["source"]) for t in turns] == [
            ("interviewer", "text"),
            ("candidate", "text"),
            ("interviewer", "text"),
        ]
        assert turns[1]["text"] == TYPED_ANSWER
        assert NEXT_QUESTION in turns[2]["text"]

        end_and_read_results(page)
        expect(page.locator("#results")).to_contain_text(TYPED_ANSWER)
        save_screenshot(page, "gradio-ui-results")
        assert requests.urls, "no request was recorded"
        assert requests.external() == []
    finally:
        context.close()


DOUBLE_SUBMIT = """
() => {
  const box = document.querySelector("#answer textarea");
  const enter = { key: "Enter", bubbles: true, cancelable: true };
  box.dispatchEvent(new KeyboardEvent("keypress", enter));
  document.querySelector("#send").click();
}
"""


def answers_sent(page: Page, text: str) -> list[list[Any]]:
    """Start recording the data of every event the page sends with `text` as its first input:
    the answers ([text, idempotency key])."""
    sent: list[list[Any]] = []

    def on_request(request: Request) -> None:
        if request.method == "POST" and urlsplit(request.url).path.endswith("/queue/join"):
            data = (request.post_data_json or {}).get("data")
            if isinstance(data, list) and data and data[0] == text:
                sent.append(data)

    page.on("request", on_request)
    return sent


def test_a_double_submit_is_one_answer(text_server: AppServer, browser: Browser) -> None:
    """Enter, then Send at once: both carry the answer's key (made in the browser when it was
    typed), so the service stores it once; the next answer typed has a key of its own."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        sent = answers_sent(page, TYPED_ANSWER)
        start_interview(page, text_server)
        box = page.locator("#answer textarea")
        box.fill(TYPED_ANSWER)
        # Enter and a click on Send in one go, before the first one's reply clears the box.
        page.evaluate(DOUBLE_SUBMIT)
        transcript = page.locator("#transcript")
        expect(transcript).to_contain_text(NEXT_QUESTION, timeout=STEP_MS)
        expect(box).to_have_value("")
        assert len(sent) == 2, sent
        (text, key), again = sent
        assert text == TYPED_ANSWER
        assert UUID.fullmatch(key), key
        assert again == [TYPED_ANSWER, key]

        turns = api_turns(text_server, page)
        assert [(t["role"], t["text"]) for t in turns][:2] == [
            ("interviewer", turns[0]["text"]),
            ("candidate", TYPED_ANSWER),
        ]
        assert [t["role"] for t in turns] == ["interviewer", "candidate", "interviewer"]
        expect(transcript.get_by_text(TYPED_ANSWER)).to_have_count(1)

        # The same words typed again are another answer, with another key.
        box.fill(TYPED_ANSWER)
        box.press("Enter")
        expect(transcript.get_by_text(TYPED_ANSWER)).to_have_count(2, timeout=STEP_MS)
        assert len(sent) == 3 and sent[2][0] == TYPED_ANSWER
        assert UUID.fullmatch(sent[2][1]) and sent[2][1] != key
        assert [t["role"] for t in api_turns(text_server, page)].count("candidate") == 2
        save_screenshot(page, "gradio-ui-double-submit")
    finally:
        context.close()


def test_voice_turn_through_the_microphone(
    voice_server: AppServer, chromium_launcher: ChromiumLauncher, tmp_path: Path
) -> None:
    wait_for_ui(voice_server)
    wav = spoken_answer_wav(
        tmp_path / "answer.wav", SPOKEN_ANSWER, lead_silence=ANSWER_LEAD_SECONDS
    )
    browser = chromium_launcher(fake_mic_wav=wav)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    requests = RequestLog.attach(context)
    page = context.new_page()
    try:
        start_interview(page, voice_server)
        expect(page.locator("#voice-off")).to_have_count(0)
        # The greeting is synthesized before the candidate connects: then it plays at once.
        expect(page.locator("#status")).to_contain_text("press Talk", timeout=VOICE_READY_MS)

        page.locator("#mic button", has_text="Access Microphone").click()
        page.locator("#mic button", has_text="Talk").click()
        expect(page.locator("#status")).to_contain_text("voice connected", timeout=STEP_MS)

        # The spoken answer, transcribed, then the interviewer's next question.
        transcript = page.locator("#transcript")
        expect(transcript).to_contain_text(NEXT_QUESTION, timeout=VOICE_TURN_MS)
        save_screenshot(page, "gradio-ui-voice-turn", full_page=False)
        turns = api_turns(voice_server, page)
        assert [(t["role"], t["source"]) for t in turns][:2] == [
            ("interviewer", "voice"),  # the greeting was spoken
            ("candidate", "voice"),
        ]
        heard = turns[1]["text"]
        assert recall(SPOKEN_ANSWER, heard) >= 0.7, heard
        expect(transcript).to_contain_text(heard)
        assert NEXT_QUESTION in turns[2]["text"]

        end_and_read_results(page)
        # The report quotes the answer as the accurate pass heard it (the live text, `heard`,
        # drove the conversation and is kept as its draft).
        answer = api_turns(voice_server, page)[1]
        assert answer["transcription"] == "accurate" and answer["draft_text"] == heard
        assert recall(SPOKEN_ANSWER, answer["text"]) >= 0.7, answer["text"]
        expect(page.locator("#results")).to_contain_text(answer["text"])
        save_screenshot(page, "gradio-ui-voice-results")
        assert requests.external() == []
        # Gradio print()s on each component call; the service's stdout stays JSON log lines.
        assert "content_type" not in voice_server.log()
    finally:
        context.close()
