"""The React demo (/demo) in a real browser: Debian's Chromium under Playwright, its fake
microphone playing an espeak-ng answer, against a real voice server (and a real coturn relay).

Sync Playwright tests: this module holds no async test (see tests/e2e/browser_fixtures.py).
Screenshots of each state go to test-artifacts/screenshots/react-demo-*.png.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect

from harness.app_server import AppServer
from harness.browser import RequestLog, save_screenshot, spoken_answer_wav
from harness.coturn import CoturnServer
from harness.voice_client import VoiceClient, start_session
from tests.api.helpers import auth
from tests.e2e.conftest import COTURN_SECRET, recall, start_voice_server

ANSWER = "I built a billing service in Python for our shop and I made it reliable with tests"
GREETING = "Hello, welcome to your practice interview."
FIRST_QUESTION = "Tell me about a project you are proud of."
NEXT_QUESTION = "How do you debug a failing service?"
# Silence before the answer in the microphone's WAV: the candidate draws breath.
ANSWER_LEAD_SECONDS = 1.5

# Generous but bounded waits (milliseconds, as Playwright takes them): two cores run the
# browser, the speech models and the test at once.
CONNECT_MS = 60_000
TURN_MS = 90_000
RESULTS_MS = 60_000

# Test-side instrumentation, injected before the page's own scripts: keep every
# RTCPeerConnection the page makes (for getStats) and every speaker the indicator showed.
INSTRUMENT = """
(() => {
  const Native = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.__pcs.push(this); }
  };
  const speakers = (window.__speakers = []);
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      const value = m.target.getAttribute && m.target.getAttribute("data-speaker");
      if (value && speakers[speakers.length - 1] !== value) speakers.push(value);
    }
  }).observe(document, { attributes: true, subtree: true, attributeFilter: ["data-speaker"] });
})();
"""

# The incoming audio of the page's latest peer connection, from getStats. totalAudioEnergy
# only grows while the decoded audio is played (the component plays it in an <audio>).
INBOUND_AUDIO = """
async () => {
  const pc = window.__pcs[window.__pcs.length - 1];
  if (!pc) return null;
  const stats = await pc.getStats();
  let found = null;
  stats.forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "audio") {
      found = { bytes: r.bytesReceived || 0, energy: r.totalAudioEnergy || 0,
                seconds: r.totalSamplesDuration || 0 };
    }
  });
  return found;
}
"""

# The local candidate type of the selected ICE pair ("host", "srflx", "relay").
SELECTED_LOCAL_CANDIDATE = """
async () => {
  const pc = window.__pcs[window.__pcs.length - 1];
  const stats = await pc.getStats();
  let pairId = null;
  stats.forEach((r) => {
    if (r.type === "transport" && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
  });
  if (!pairId) return null;
  const pair = stats.get(pairId);
  const local = stats.get(pair.localCandidateId);
  const remote = stats.get(pair.remoteCandidateId);
  return { local: local.candidateType, remote: remote.candidateType };
}
"""


# The candidate speaks when the interviewer has finished, as a person would (and as the aiortc
# client's `say()` does): the service does not listen while its own line plays, and the
# greeting's timing depends on the machine's load. Chromium's fake microphone plays its WAV from
# the moment a capture opens, so the capture is opened then: the page's getUserMedia gets a
# WebAudio stream that stays silent until `window.__speakNow()` opens the real (fake-device)
# microphone and connects it. Everything the page sends still comes from Chromium's fake device.
MICROPHONE_GATE = """
(() => {
  const devices = navigator.mediaDevices;
  const real = devices.getUserMedia.bind(devices);
  let context = null, destination = null, asked = null;
  devices.getUserMedia = async (constraints) => {
    if (!constraints || !constraints.audio) return real(constraints);
    context = context || new AudioContext({ sampleRate: 48000 });
    destination = context.createMediaStreamDestination();
    asked = constraints;
    return destination.stream;
  };
  window.__speakNow = async () => {
    const microphone = await real(asked);
    context.createMediaStreamSource(microphone).connect(destination);
    await context.resume();
    return true;
  };
})();
"""


def demo_url(server: AppServer, **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{server.base_url}/demo/" + (f"?{params}" if params else "")


def session_id_of(requests: RequestLog) -> str:
    """The session the page started, from the API URLs it called."""
    for url in requests.urls:
        found = re.search(r"/api/interview/([A-Za-z0-9_-]{8,})/", url)
        if found:
            return found.group(1)
    raise AssertionError(f"the page called no session route: {requests.urls}")


def new_page(
    browser: Browser, *, gate_microphone: bool = False
) -> tuple[BrowserContext, Page, RequestLog]:
    context = browser.new_context(viewport={"width": 1000, "height": 860})
    context.add_init_script(INSTRUMENT)
    if gate_microphone:
        context.add_init_script(MICROPHONE_GATE)
    requests = RequestLog.attach(context)
    page = context.new_page()
    page.set_default_timeout(CONNECT_MS)
    return context, page, requests


def wait_until(what: str, check: Callable[[], Any], timeout_s: float) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout_s}s (last: {last!r})")


def error_box(page: Page):
    return page.get_by_role("alert")


def start(page: Page) -> None:
    start_button = page.get_by_role("button", name="Start interview")
    expect(start_button).to_be_enabled()
    start_button.focus()
    page.keyboard.press("Enter")  # keyboard usable: the form submits from the keyboard


def api_turns(server: AppServer, sid: str, token: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{server.api}/{sid}/transcript", headers=auth(token), timeout=10)
    return response.json()["turns"]


def run_spoken_turn(
    server: AppServer,
    browser: Browser,
    name: str,
    while_live: Callable[[Page], None] | None = None,
    **query: str,
) -> tuple[Page, RequestLog]:
    """Start in the demo, hear the greeting, answer out loud, see the next question, end,
    and see the results. Returns the page (still open) and its request log."""
    _context, page, requests = new_page(browser, gate_microphone=True)
    page.goto(demo_url(server, plan="quick-engineer", user="web-demo-test", **query))
    expect(page.get_by_test_id("phase")).to_have_text("Ready to start")
    page.get_by_label("Your name").fill("Ada Candidate")
    save_screenshot(page, f"{name}-ready")

    start(page)
    phase = page.get_by_test_id("phase")
    expect(phase).to_have_text("Live", timeout=CONNECT_MS)
    # The start form went away with the focus in it: the focus is on the status line, not lost.
    expect(phase).to_be_focused()
    transcript = page.get_by_test_id("transcript")
    expect(transcript.locator("li").first).to_contain_text(GREETING)

    # The greeting's audio arrives, and it is not silence.
    def heard_audio() -> dict[str, float] | None:
        stats = page.evaluate(INBOUND_AUDIO)
        # Over a second of the greeting played, with real energy (digital silence has none).
        ok = stats and stats["bytes"] > 8000 and stats["seconds"] > 1.0 and stats["energy"] > 0.01
        return stats if ok else None

    wait_until("the greeting's audio (bytes and energy) in the page", heard_audio, 90)

    # When the indicator says the interviewer has finished, the candidate answers.
    speaking = page.get_by_test_id("speaking")
    # It is not a live region: a screen reader would read every change over the interviewer.
    expect(speaking).to_have_attribute("aria-live", "off")
    wait_until(
        "the interviewer to finish the greeting",
        lambda: (
            "interviewer" in page.evaluate("window.__speakers")
            and speaking.get_attribute("data-speaker") != "interviewer"
        ),
        TURN_MS / 1000,
    )
    assert page.evaluate("window.__speakNow()")

    # The transcribed answer and the next question appear.
    candidate = transcript.locator('li[data-role="candidate"]').first
    expect(candidate).to_be_visible(timeout=TURN_MS)
    heard = candidate.locator(".spool-text").inner_text()
    assert recall(ANSWER, heard) >= 0.7, heard
    assert candidate.get_attribute("data-source") == "voice"
    next_line = transcript.locator("li").nth(2)
    expect(next_line).to_contain_text(NEXT_QUESTION, timeout=TURN_MS)
    assert next_line.get_attribute("data-role") == "interviewer"

    # The indicator showed the interviewer speaking, then the candidate.
    speakers = page.evaluate("window.__speakers")
    assert "interviewer" in speakers and "candidate" in speakers, speakers
    assert speakers.index("interviewer") < speakers.index("candidate"), speakers
    save_screenshot(page, f"{name}-live")
    if while_live is not None:
        while_live(page)

    # Mute is a toggle button: one name, its state in aria-pressed.
    mute = page.get_by_role("button", name="Mute microphone", exact=True)
    expect(mute).to_have_attribute("aria-pressed", "false")
    mute.click()
    expect(mute).to_have_attribute("aria-pressed", "true")
    mute.click()
    expect(mute).to_have_attribute("aria-pressed", "false")

    page.get_by_role("button", name="End interview").click()
    expect(page.get_by_test_id("phase")).to_have_text("Interview ended")
    # The controls went away with the focus on End: it moves to the status line.
    expect(page.get_by_test_id("phase")).to_be_focused()
    results = page.get_by_test_id("results")
    expect(results).to_be_visible(timeout=RESULTS_MS)
    expect(results.get_by_test_id("metrics")).to_contain_text("1 of 2")
    expect(results).to_contain_text(FIRST_QUESTION)
    # The answer as the accurate pass heard it (the live text `heard` drove the conversation).
    quoted = results.locator(".spool-answer-quote p").first
    expect(quoted).to_be_visible()
    assert recall(ANSWER, quoted.inner_text()) >= 0.7, (quoted.inner_text(), heard)
    # Without a language model the report says why there is no evaluation.
    expect(results.get_by_test_id("evaluation-note")).to_be_visible()
    save_screenshot(page, f"{name}-results")
    return page, requests


# -- a full voice turn ---------------------------------------------------------------------


def test_a_spoken_turn_in_the_react_demo(
    voice_server: AppServer, chromium_launcher: Callable[..., Browser], tmp_path: Path
):
    wav = spoken_answer_wav(tmp_path / "answer.wav", ANSWER, lead_silence=ANSWER_LEAD_SECONDS)
    browser = chromium_launcher(fake_mic_wav=wav)
    page, requests = run_spoken_turn(voice_server, browser, "react-demo")

    sid = session_id_of(requests)
    # What the page showed is what the service stored.
    status = httpx.get(f"{voice_server.api}/{sid}/status", timeout=10)
    assert status.status_code == 401  # session routes need the token, which only the page has
    # Nothing but this server: no fonts, CDNs or analytics.
    assert requests.external() == [], requests.external()
    assert all(url.startswith(voice_server.base_url) for url in requests.urls), requests.urls
    page.context.close()


def start_relayed_voice_server(directory: Path, relay: CoturnServer) -> AppServer:
    """A voice server whose media goes only through `relay`, with the session's credentials."""
    return start_voice_server(
        directory,
        TURN_SERVER=f"127.0.0.1:{relay.port}",
        TURN_SECRET=COTURN_SECRET,
        RTC_ICE_TRANSPORT_POLICY="relay",
    )


def test_a_spoken_turn_through_a_turn_relay(
    coturn: CoturnServer, chromium_launcher: Callable[..., Browser], tmp_path: Path
):
    # Both sides relay-only: the server by its settings, the page by ?relay=1, with the
    # credentials /ice-servers issued for the session.
    server = start_relayed_voice_server(tmp_path, coturn)
    browser: Browser | None = None
    try:
        wav = spoken_answer_wav(tmp_path / "answer.wav", ANSWER, lead_silence=ANSWER_LEAD_SECONDS)
        browser = chromium_launcher(fake_mic_wav=wav)

        def relayed(page: Page) -> None:
            # The page's media went through coturn: its selected pair uses a relay candidate.
            pair = page.evaluate(SELECTED_LOCAL_CANDIDATE)
            assert pair is not None and pair["local"] == "relay", pair

        _page, requests = run_spoken_turn(
            server, browser, "react-demo-relay", while_live=relayed, relay="1"
        )
        sid = session_id_of(requests)
        # Each side allocated a relay with this session's credentials (username ends in its id).
        assert coturn.log().count(f":{sid}") >= 2, coturn.log()[-2000:]
        assert requests.external() == [], requests.external()
    finally:
        if browser is not None:
            browser.close()  # hang up first, so the server has no live call to drain
        server.stop()


def test_a_relay_outage_is_reconnected_in_the_browser(
    tmp_path: Path, chromium_launcher: Callable[..., Browser]
):
    """The TURN relay that carries the call dies mid-interview and comes back: the page says it
    is reconnecting, offers again on the same session, and is live again with the
    interviewer's audio flowing, without the candidate doing anything."""
    relay = CoturnServer(COTURN_SECRET)
    relay.start()
    server = start_relayed_voice_server(tmp_path, relay)
    browser: Browser | None = None
    try:
        wav = spoken_answer_wav(tmp_path / "answer.wav", ANSWER, lead_silence=ANSWER_LEAD_SECONDS)
        browser = chromium_launcher(fake_mic_wav=wav)
        _context, page, requests = new_page(browser, gate_microphone=True)
        page.goto(demo_url(server, plan="quick-engineer", user="web-demo-test", relay="1"))
        start(page)
        phase = page.get_by_test_id("phase")
        expect(phase).to_have_text("Live", timeout=CONNECT_MS)
        wait_until(
            "the greeting's audio through the relay",
            lambda: (page.evaluate(INBOUND_AUDIO) or {}).get("bytes", 0) > 8000,
            60,
        )

        relay.interrupt()
        notice = page.get_by_text(re.compile(r"Connection lost; reconnecting \(attempt \d+\)"))
        expect(notice).to_be_visible(timeout=45_000)
        save_screenshot(page, "react-demo-reconnecting")
        relay.start()

        # Live again on a new connection: the notice is gone and audio arrives on it.
        expect(notice).to_be_hidden(timeout=90_000)
        expect(phase).to_have_text("Live")
        assert page.evaluate("window.__pcs.length") >= 2
        wait_until(
            "the interviewer's audio on the new connection",
            lambda: (page.evaluate(INBOUND_AUDIO) or {}).get("bytes", 0) > 8000,
            60,
        )
        offers = [url for url in requests.urls if url.endswith("/rtc/offer")]
        assert len(offers) >= 2, requests.urls
        sid = session_id_of(requests)
        assert all(f"/{sid}/" in url for url in offers)  # the same session, resumed
        expect(error_box(page)).to_have_count(0)
        assert requests.external() == [], requests.external()
    finally:
        if browser is not None:
            browser.close()
        server.stop()
        relay.stop()


# -- what the candidate sees when it cannot work ---------------------------------------------


def test_a_denied_microphone_is_explained_and_typing_still_works(
    voice_server: AppServer, chromium_launcher: Callable[..., Browser]
):
    browser = chromium_launcher(allow_microphone=False)  # the permission prompt is refused
    _context, page, requests = new_page(browser)
    page.goto(demo_url(voice_server, plan="quick-engineer"))
    start(page)
    alert = error_box(page)
    expect(alert).to_contain_text("Microphone blocked")
    expect(alert).to_have_attribute("data-error-kind", "microphone_denied")
    expect(page.get_by_test_id("phase")).to_have_text("Voice off: you can type your answers")
    expect(page.get_by_test_id("transcript")).to_contain_text(GREETING)
    save_screenshot(page, "react-demo-microphone-denied")

    # The session is still an interview: a typed answer gets the next question.
    page.get_by_label("Type your answer instead").fill(
        "I led the move of our nightly jobs to a queue with retries and dashboards"
    )
    page.get_by_role("button", name="Send answer").click()
    transcript = page.get_by_test_id("transcript")
    expect(transcript.locator('li[data-role="candidate"]')).to_contain_text("nightly jobs")
    expect(transcript.locator("li").nth(2)).to_contain_text(NEXT_QUESTION)
    assert requests.external() == [], requests.external()


# Every text the typed answer's status line shows ("Saving your answer… retrying"), in order.
ANSWER_NOTES = """
(() => {
  const notes = (window.__answerNotes = []);
  new MutationObserver(() => {
    const note = document.querySelector('[data-testid="answer-status"]');
    const text = note ? note.textContent : null;
    if (text && notes[notes.length - 1] !== text) notes.push(text);
  }).observe(document, { childList: true, subtree: true, characterData: true });
})();
"""
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_a_typed_answer_whose_reply_was_lost_is_sent_again_with_its_key_and_stored_once(
    voice_server: AppServer, chromium_launcher: Callable[..., Browser]
):
    browser = chromium_launcher(allow_microphone=False)  # typing only: no voice slot taken
    context, page, requests = new_page(browser)
    context.add_init_script(ANSWER_NOTES)
    keys: list[str | None] = []
    bearer: list[str] = []

    def lose_the_first_reply(route: Route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        keys.append(route.request.headers.get("idempotency-key"))
        bearer.append(route.request.headers["authorization"].removeprefix("Bearer "))
        if len(keys) == 1:
            route.fetch()  # the server takes the answer and replies...
            route.abort("connectionreset")  # ...and the page never gets the reply
        else:
            route.continue_()

    page.route("**/transcript", lose_the_first_reply)
    page.goto(demo_url(voice_server, plan="quick-engineer"))
    start(page)
    expect(page.get_by_test_id("phase")).to_have_text("Voice off: you can type your answers")
    answer = "I led the move of our nightly jobs to a queue with retries and dashboards"
    page.get_by_label("Type your answer instead").fill(answer)
    page.get_by_role("button", name="Send answer").click()
    transcript = page.get_by_test_id("transcript")
    expect(transcript.locator("li").nth(2)).to_contain_text(NEXT_QUESTION, timeout=TURN_MS)

    # One key, made in the browser, sent twice, and the page said it was retrying.
    deadline = time.monotonic() + TURN_MS / 1000
    while len(keys) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(100)  # the page retries after its backoff (route events run here)
    expect(page.get_by_role("button", name="Sending…")).to_have_count(0, timeout=TURN_MS)
    assert len(keys) == 2, keys
    assert keys[0] is not None and UUID.fullmatch(keys[0]), keys
    assert keys[1] == keys[0]
    notes = page.evaluate("window.__answerNotes")
    assert notes[:1] == ["Saving your answer… retrying (attempt 2 of 5)"], notes
    # The server kept one answer: the interview is on its second question, not past it.
    expect(transcript.locator('li[data-role="candidate"]')).to_have_count(1)
    expect(page.get_by_label("Type your answer instead")).to_have_value("")
    turns = api_turns(voice_server, session_id_of(requests), bearer[0])
    assert [(t["role"], t["text"]) for t in turns][1:2] == [("candidate", answer)]
    assert [t["role"] for t in turns] == ["interviewer", "candidate", "interviewer"]


def test_ending_stops_the_live_events_even_without_their_results_event(
    voice_server: AppServer, chromium_launcher: Callable[..., Browser]
):
    browser = chromium_launcher(allow_microphone=False)  # typing only: no voice slot taken
    _context, page, _requests = new_page(browser)
    # Every /events response ends at once without the `results` event (as when it is missed),
    # asking the client to come back after 100 ms.
    followed: list[str] = []

    def no_results(route: Route) -> None:
        followed.append(route.request.url)
        route.fulfill(
            status=200,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"},
            body="retry: 100\nevent: keepalive\ndata: {}\n\n",
        )

    page.route("**/events", no_results)
    page.goto(demo_url(voice_server, plan="quick-engineer"))
    start(page)
    phase = page.get_by_test_id("phase")
    expect(phase).to_have_text("Voice off: you can type your answers")
    page.get_by_role("button", name="End interview").click()
    expect(phase).to_have_text("Interview ended")
    expect(page.get_by_test_id("results")).to_be_visible(timeout=RESULTS_MS)
    expect(phase).to_be_focused()
    assert len(followed) >= 2, followed  # the stream was followed while the interview ran
    seen = len(followed)
    page.wait_for_timeout(1500)
    assert len(followed) == seen, f"/events requested {len(followed) - seen} more times after End"


def test_the_candidate_erases_the_interview_from_the_results(
    voice_server: AppServer, chromium_launcher: Callable[..., Browser]
):
    browser = chromium_launcher(allow_microphone=False)  # typing only: no voice slot taken
    _context, page, requests = new_page(browser)
    tokens: list[str] = []
    page.on(
        "request",
        lambda request: (
            tokens.append(request.headers["authorization"].removeprefix("Bearer "))
            if "authorization" in request.headers
            else None
        ),
    )
    page.goto(demo_url(voice_server, plan="quick-engineer"))
    start(page)
    expect(page.get_by_test_id("phase")).to_have_text("Voice off: you can type your answers")
    page.get_by_label("Type your answer instead").fill("I moved our nightly jobs to a queue")
    page.get_by_role("button", name="Send answer").click()
    expect(page.get_by_test_id("transcript").locator("li")).to_have_count(3, timeout=TURN_MS)
    page.get_by_role("button", name="End interview").click()
    expect(page.get_by_test_id("results")).to_be_visible(timeout=RESULTS_MS)
    sid = session_id_of(requests)
    assert httpx.get(f"{voice_server.api}/{sid}/status", headers=auth(tokens[-1])).is_success

    # Asked to confirm; declined, nothing happens; accepted, the interview is gone.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Delete this interview").click()
    expect(page.get_by_test_id("results")).to_be_visible()
    assert httpx.get(f"{voice_server.api}/{sid}/status", headers=auth(tokens[-1])).is_success
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete this interview").click()
    expect(page.get_by_test_id("erased")).to_contain_text("This interview was deleted")
    expect(page.get_by_test_id("results")).to_have_count(0)
    expect(page.get_by_test_id("transcript").locator("li")).to_have_count(0)
    gone = httpx.get(f"{voice_server.api}/{sid}/status", headers=auth(tokens[-1]), timeout=10)
    assert gone.status_code == 404, gone.text


class HeldConnections:
    """aiortc voice connections held open from a background thread (this module is sync)."""

    def __init__(self, server: AppServer, count: int) -> None:
        self.server = server
        self.count = count
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.clients: list[VoiceClient] = []

    async def _open(self) -> None:
        for _ in range(self.count):
            sid, token = await start_session(self.server.api, plan_id="quick-support")
            self.clients.append(await VoiceClient.connect(self.server.api, sid, token))

    async def _close(self) -> None:
        for client in self.clients:
            await client.close()

    def __enter__(self) -> HeldConnections:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self.loop).result(timeout=90)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


@pytest.fixture
def server_at_capacity(voice_server: AppServer) -> Iterator[AppServer]:
    # voice_server allows 2 voice interviews (MAX_CONCURRENT_INTERVIEWS=2): hold both.
    with HeldConnections(voice_server, 2):
        health = httpx.get(f"{voice_server.api}/health", timeout=10).json()
        assert "2 live connections" in health["checks"]["voice"]["detail"], health
        yield voice_server


def test_a_full_server_says_so(server_at_capacity: AppServer, page: Page):
    page.context.add_init_script(INSTRUMENT)
    requests = RequestLog.attach(page.context)
    page.goto(demo_url(server_at_capacity, plan="quick-engineer"))
    start(page)
    alert = error_box(page)
    expect(alert).to_contain_text("Server busy", timeout=CONNECT_MS)
    expect(alert).to_contain_text("All voice interview slots are in use")
    expect(alert).to_contain_text("Try again in about 10 seconds")
    expect(alert).to_have_attribute("data-error-kind", "at_capacity")
    expect(page.get_by_role("button", name="Try voice again")).to_be_visible()
    expect(page.get_by_label("Type your answer instead")).to_be_visible()
    save_screenshot(page, "react-demo-at-capacity")
    assert requests.external() == [], requests.external()


@pytest.fixture(scope="module")
def short_lived_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """Sessions expire 3 s after they start; no voice models needed to see that."""
    directory = tmp_path_factory.mktemp("short-lived")
    server = AppServer(
        directory / "server.log",
        {"DATABASE_URL": f"sqlite:///{directory}/spool.db", "SESSION_TTL_MINUTES": "0.05"},
    )
    server.start(timeout=60)
    yield server
    server.stop()


def test_an_expired_session_says_so(short_lived_server: AppServer, page: Page):
    server = short_lived_server
    started = httpx.post(f"{server.api}/start", json={"user_id": "web-demo-test"}, timeout=10)
    assert started.status_code == 201, started.text
    sid, token = started.json()["session_id"], started.json()["token"]
    wait_until(
        "the session to expire",
        lambda: (
            httpx.get(f"{server.api}/{sid}/status", headers=auth(token), timeout=10).json()[
                "status"
            ]
            == "expired"
        ),
        30,
    )
    requests = RequestLog.attach(page.context)
    # Join the session the way a backend hands one over: in the fragment, never sent.
    page.goto(f"{demo_url(server)}#session={sid}&token={token}")
    start(page)
    alert = error_box(page)
    expect(alert).to_contain_text("Session expired")
    expect(alert).to_contain_text("has expired")
    expect(alert).to_have_attribute("data-error-kind", "session_expired")
    expect(page.get_by_role("button", name="Start a new interview")).to_be_visible()
    expect(page.get_by_test_id("phase")).to_be_focused()  # not lost with the start form
    save_screenshot(page, "react-demo-session-expired")
    assert all(token not in url for url in requests.urls)
    assert requests.external() == [], requests.external()


def test_a_session_that_expires_during_the_interview_says_so_and_hangs_up(
    tmp_path: Path, chromium_launcher: Callable[..., Browser]
):
    """The time limit passes while the candidate is connected: the server's expiry sweep ends
    the session, the page says why from the live events, and the voice connection is closed
    for good (no reconnecting to an interview that is over)."""
    server = start_voice_server(tmp_path, SESSION_TTL_MINUTES="0.3")  # 18 s
    try:
        wav = spoken_answer_wav(tmp_path / "answer.wav", ANSWER, lead_silence=ANSWER_LEAD_SECONDS)
        browser = chromium_launcher(fake_mic_wav=wav)
        context, page, requests = new_page(browser, gate_microphone=True)
        page.goto(demo_url(server, plan="quick-engineer", user="web-demo-test"))
        start(page)
        expect(page.get_by_test_id("phase")).to_have_text("Live", timeout=CONNECT_MS)
        # The candidate never answers; the limit (18 s) and the sweep (every 15 s) pass.
        alert = error_box(page)
        expect(alert).to_contain_text("time limit passed", timeout=60_000)
        expect(alert).to_have_attribute("data-error-kind", "session_expired")
        wait_until(
            "the page's voice connection to close",
            lambda: page.evaluate("window.__pcs.every((pc) => pc.connectionState === 'closed')"),
            30,
        )
        offers = [url for url in requests.urls if url.endswith("/rtc/offer")]
        time.sleep(3)  # a reconnect would come within its first backoff
        assert [u for u in requests.urls if u.endswith("/rtc/offer")] == offers, requests.urls
        assert len(offers) == 1
        expect(page.get_by_test_id("phase")).to_be_focused()
        save_screenshot(page, "react-demo-expired-while-live")
        sid = session_id_of(requests)
        assert f"/{sid}/" in offers[0]
        context.close()
    finally:
        server.stop()


def test_the_demo_page_is_offline_and_accessible(voice_server: AppServer, page: Page):
    requests = RequestLog.attach(page.context)
    response = page.goto(demo_url(voice_server))
    assert response is not None and response.ok
    # The browser enforces "nothing from elsewhere" too.
    assert "default-src 'self'" in response.headers["content-security-policy"]
    expect(page.get_by_role("heading", level=1)).to_have_text("Spool Interview: voice demo")
    expect(page.get_by_label("Your name")).to_be_editable()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Your name")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Start interview")).to_be_focused()
    page.wait_for_load_state("networkidle")
    assert requests.external() == [], requests.external()
    assert requests.failed == [], requests.failed
