"""The React page during a real barge-in: the candidate speaks over the interviewer's long
greeting through Chromium's fake microphone, the server cuts the line, and the page's speaking
indicator stops saying the interviewer is speaking long before the line would have played out;
the greeting is then shown cut, "(interrupted)".

Sync Playwright tests: this module holds no async test (see tests/e2e/browser_fixtures.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Response, expect

from harness.app_server import AppServer
from harness.browser import save_screenshot, spoken_answer_wav
from interview.config import PACKAGE_DIR
from tests.api.helpers import auth
from tests.e2e.conftest import start_voice_server
from tests.e2e.test_web_demo import (
    INBOUND_AUDIO,
    INSTRUMENT,
    MICROPHONE_GATE,
    demo_url,
    wait_until,
)

# Said over the greeting, as a candidate who has heard enough would.
OVER_THE_GREETING = "Sorry to jump in, I am ready, I have built backend services for years now."
CONNECT_MS = 90_000
TURN_MS = 120_000
# The greeting plays for well over 15 s; the candidate speaks once 2 s of it were heard, and the
# indicator must stop within this long of that (the barge-in's decision plus the event's trip).
STOPS_WITHIN_SECONDS = 4.0


@pytest.fixture(scope="module")
def long_greeting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """A voice server with the built-in plans: the default one's greeting is long."""
    server = start_voice_server(
        tmp_path_factory.mktemp("barge-in"),
        PLANS_DIR=str(PACKAGE_DIR / "plans"),
        DEFAULT_PLAN_ID="backend-engineer-screen",
    )
    yield server
    server.stop()


def test_speaking_indicator_stops_when_interrupted_during_a_real_barge_in(
    long_greeting_server: AppServer,
    chromium_launcher: Callable[..., Browser],
    tmp_path: Path,
) -> None:
    server = long_greeting_server
    wav = spoken_answer_wav(tmp_path / "over.wav", OVER_THE_GREETING, lead_silence=0.2)
    browser = chromium_launcher(fake_mic_wav=wav)
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    context.add_init_script(INSTRUMENT)
    context.add_init_script(MICROPHONE_GATE)
    page = context.new_page()
    page.set_default_timeout(CONNECT_MS)
    started: dict[str, Any] = {}

    def on_response(response: Response) -> None:
        if response.url.endswith("/api/interview/start") and response.status == 201:
            started.update(response.json())

    page.on("response", on_response)
    try:
        page.goto(demo_url(server, user="barge-in-test"))
        page.get_by_role("button", name="Start interview").click()
        expect(page.get_by_test_id("phase")).to_have_text("Live", timeout=CONNECT_MS)
        speaking = page.get_by_test_id("speaking")
        expect(speaking).to_have_attribute("data-speaker", "interviewer", timeout=TURN_MS)
        expect(speaking).to_have_text("The interviewer is speaking")

        # Two seconds of the greeting are heard, then the candidate speaks over it.
        def greeting_playing() -> Any:
            stats = page.evaluate(INBOUND_AUDIO)
            return stats if stats and stats["seconds"] > 2.0 and stats["energy"] > 0.01 else None

        wait_until("two seconds of the greeting in the page", greeting_playing, 60)
        assert page.evaluate("window.__speakNow()")
        spoke_at = time.monotonic()

        wait_until(
            "the indicator to stop saying the interviewer is speaking",
            lambda: speaking.get_attribute("data-speaker") != "interviewer",
            STOPS_WITHIN_SECONDS,
        )
        stopped_after = time.monotonic() - spoke_at
        expect(speaking).not_to_have_text("The interviewer is speaking")

        # The server cut the line: the greeting is shown as far as it was played.
        transcript = page.get_by_test_id("transcript")
        greeting = transcript.locator("li").first
        expect(greeting).to_have_attribute("data-interruption", "barge_in", timeout=TURN_MS)
        expect(greeting.get_by_test_id("interruption")).to_have_text("(interrupted)")
        save_screenshot(page, "interrupted-react-barge-in")

        turns = httpx.get(
            f"{server.api}/{started['session_id']}/transcript",
            headers=auth(started["token"]),
            timeout=10,
        ).json()["turns"]
        assert turns[0]["interruption"] == "barge_in"
        assert len(turns[0]["text"]) < len(turns[0]["planned_text"])
        assert stopped_after < STOPS_WITHIN_SECONDS
    finally:
        context.close()
