"""Pytest fixtures for the browser tests (React demo, Gradio UI), on pytest-playwright.

Imported by tests/e2e/conftest.py. pytest-playwright's `browser`, `context` and `page` work
as usual: `browser_type_launch_args` below points them at Debian's Chromium with WebRTC on
loopback and Chromium's built-in fake microphone. A test that needs the microphone to say
something specific launches its own browser with `chromium_launcher(fake_mic_wav=...)`.

These are sync Playwright fixtures: use them from plain `def` tests, never `async def` ones,
and keep browser tests in modules of their own. The sync API runs its event loop in a greenlet
of the test thread, and while it is started asyncio sees that loop as running, so every
pytest-asyncio test would fail with "cannot be called from a running event loop". pytest-playwright
starts it once per session; here it is started and stopped per module instead (the fixtures
below narrow its session-scoped ones), so the async tests of later modules are unaffected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserType, Playwright, sync_playwright

from harness.browser import launch_args, launch_chromium

ChromiumLauncher = Callable[..., Browser]


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    """pytest-playwright's launch options: Debian's Chromium, fake microphone, loopback ICE."""
    return launch_args()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright for one module only (see the module doc)."""
    pw = sync_playwright().start()
    yield pw
    pw.stop()


@pytest.fixture(scope="module")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    return getattr(playwright, browser_name)


@pytest.fixture(scope="module")
def launch_browser(
    browser_type_launch_args: dict[str, Any], browser_type: BrowserType
) -> ChromiumLauncher:
    def launch(**kwargs: Any) -> Browser:
        return browser_type.launch(**{**browser_type_launch_args, **kwargs})

    return launch


@pytest.fixture(scope="module")
def browser(launch_browser: ChromiumLauncher) -> Iterator[Browser]:
    browser = launch_browser()
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def browser_context_args() -> dict[str, Any]:
    # Tests use absolute URLs of the servers they start (free ports), so no base_url.
    return {}


@pytest.fixture
def chromium_launcher(playwright: Playwright) -> Iterator[ChromiumLauncher]:
    """`chromium_launcher(fake_mic_wav=path, allow_microphone=True, ...)` launches a Chromium
    (arguments as `harness.browser.launch_chromium`); every one is closed after the test.
    One browser per microphone WAV: Chromium reads the file from its command line."""
    browsers: list[Browser] = []

    def launch(fake_mic_wav: str | Path | None = None, **options: Any) -> Browser:
        browser = launch_chromium(playwright, fake_mic_wav, **options)
        browsers.append(browser)
        return browser

    yield launch
    for browser in browsers:
        if browser.is_connected():  # a test may have closed it already
            browser.close()
