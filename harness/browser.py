"""Debian's Chromium under Playwright, with a fake microphone, for the browser end-to-end tests.

`playwright install` cannot download browsers here (no internet), so the tests launch the
Chromium that `scripts/ensure-system-packages.sh` installs from Debian (`/usr/bin/chromium`,
or `$CHROMIUM_PATH`). Measured on this machine (see the project's infra notes):

- WebRTC between the browser and a server on 127.0.0.1 gathers no ICE candidates unless
  `--allow-loopback-in-peer-connection` is given.
- `--use-fake-device-for-media-stream` gives a fake microphone; with
  `--use-file-for-fake-audio-capture=<wav>` it plays that WAV (from the start, each time a
  capture opens). `%noloop` after the path plays it once, then silence: a looping answer would
  be heard again as the answer to the next question.
- `--use-fake-ui-for-media-stream` accepts the permission prompt. Without it (and without
  `context.grant_permissions(["microphone"])`) Playwright denies the prompt, which is how the
  "microphone denied" state is reached.

    with sync_playwright() as pw:
        browser = launch_chromium(pw, fake_mic_wav=answer_wav)
        page = browser.new_page()
        requests = RequestLog.attach(page)
        page.goto(f"{server.base_url}/demo")
        ...
        assert requests.external() == []
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Request

from harness.speech_audio import SAMPLE_RATE, join, save_wav, speech

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_PATH = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
# Gitignored; screenshots and other browser artifacts of a run go under here.
ARTIFACTS_DIR = ROOT / "test-artifacts"
SCREENSHOTS_DIR = ARTIFACTS_DIR / "screenshots"

# Quiet, offline Chromium: nothing of its own goes to the network (component updates, sync,
# safe-browsing lists), so any external request a test sees comes from the page itself.
BASE_ARGS: tuple[str, ...] = (
    "--no-sandbox",  # tests run as root in a container; the sandbox refuses root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    # Autoplay of the interviewer's audio must not wait for a user gesture in tests.
    "--autoplay-policy=no-user-gesture-required",
)
WEBRTC_ARGS: tuple[str, ...] = (
    "--allow-loopback-in-peer-connection",  # else no ICE candidates on a loopback-only host
    "--use-fake-device-for-media-stream",
)
AUTO_ALLOW_MEDIA_ARG = "--use-fake-ui-for-media-stream"


class ChromiumMissing(RuntimeError):
    """Debian's chromium is not installed."""


def chromium_executable() -> str:
    if not CHROMIUM_PATH.exists():
        raise ChromiumMissing(
            f"{CHROMIUM_PATH} not found: run `make test` (it installs Debian's chromium) or "
            "`apt-get install chromium`; set CHROMIUM_PATH for another build"
        )
    return str(CHROMIUM_PATH)


def chromium_args(
    fake_mic_wav: str | os.PathLike[str] | None = None,
    *,
    allow_microphone: bool = True,
    loop_mic: bool = False,
    extra: Sequence[str] = (),
) -> list[str]:
    """Command-line args for Chromium with WebRTC on loopback and a fake microphone.

    `fake_mic_wav`: a 16-bit PCM WAV the fake microphone plays (once, unless `loop_mic`);
    None gives Chromium's built-in fake device (a beep every second).
    `allow_microphone`: accept getUserMedia prompts automatically. False leaves the decision to
    the context's permissions: Playwright denies ungranted prompts.
    """
    args = [*BASE_ARGS, *WEBRTC_ARGS]
    if allow_microphone:
        args.append(AUTO_ALLOW_MEDIA_ARG)
    if fake_mic_wav is not None:
        path = Path(fake_mic_wav).resolve()
        if not path.exists():
            raise FileNotFoundError(path)
        args.append(f"--use-file-for-fake-audio-capture={path}{'' if loop_mic else '%noloop'}")
    args.extend(extra)
    return args


def launch_args(
    fake_mic_wav: str | os.PathLike[str] | None = None,
    *,
    allow_microphone: bool = True,
    loop_mic: bool = False,
    headless: bool = True,
    extra: Sequence[str] = (),
) -> dict[str, object]:
    """Keyword arguments for `playwright.chromium.launch(...)` (and pytest-playwright's
    `browser_type_launch_args`)."""
    return {
        "executable_path": chromium_executable(),
        "headless": headless,
        "args": chromium_args(
            fake_mic_wav, allow_microphone=allow_microphone, loop_mic=loop_mic, extra=extra
        ),
        # Playwright's default args include some that need its own Chromium build; Debian's
        # accepts them all, so only the timeout is tuned: a loaded 2-core machine is slow.
        "timeout": 60_000,
    }


def launch_chromium(
    playwright: Playwright,
    fake_mic_wav: str | os.PathLike[str] | None = None,
    *,
    allow_microphone: bool = True,
    loop_mic: bool = False,
    headless: bool = True,
    extra: Sequence[str] = (),
) -> Browser:
    """Launch Debian's Chromium (see `chromium_args`). The caller closes it."""
    return playwright.chromium.launch(
        **launch_args(  # type: ignore[arg-type]
            fake_mic_wav,
            allow_microphone=allow_microphone,
            loop_mic=loop_mic,
            headless=headless,
            extra=extra,
        )
    )


def spoken_answer_wav(
    path: str | os.PathLike[str],
    text: str,
    *,
    lead_silence: float = 0.0,
    trail_silence: float = 3.0,
    voice: str = "en-us",
    rate_wpm: int = 160,
) -> Path:
    """Write an espeak-ng WAV of `text` for the fake microphone (48 kHz, 16-bit mono).

    The fake microphone starts playing when the page opens it (getUserMedia), so
    `lead_silence` is how long the candidate "waits" before answering: long enough for the
    interviewer's greeting to connect and play, since the service does not listen while its own
    line plays.
    """
    audio = join(
        float(lead_silence), speech(text, voice=voice, rate_wpm=rate_wpm), float(trail_silence)
    )
    return save_wav(path, audio, SAMPLE_RATE)


_LOCAL_HOSTS = {"localhost"}
# Schemes that never leave the browser.
_LOCAL_SCHEMES = {"data", "blob", "about", "chrome", "chrome-extension", "devtools"}


def is_external(url: str) -> bool:
    """Whether a request URL leaves this machine (anything but loopback and in-browser URLs)."""
    parts = urlsplit(url)
    if parts.scheme in _LOCAL_SCHEMES:
        return False
    host = (parts.hostname or "").lower()
    if not host:
        return False
    if host in _LOCAL_HOSTS or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a DNS name: external


@dataclass
class RequestLog:
    """Every request a page (or a whole context) makes, including failed ones.

    Attach it before navigating. `external()` lists the URLs that would leave the machine:
    fonts, CDNs, analytics. A request that fails (no internet here) is still listed, since it
    was attempted.
    """

    urls: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @classmethod
    def attach(cls, target: Page | BrowserContext) -> RequestLog:
        log = cls()
        target.on("request", log._on_request)
        target.on("requestfailed", log._on_failed)
        return log

    def _on_request(self, request: Request) -> None:
        self.urls.append(request.url)

    def _on_failed(self, request: Request) -> None:
        self.failed.append(request.url)

    def external(self) -> list[str]:
        return [url for url in self.urls if is_external(url)]


def collect_external_requests(target: Page | BrowserContext) -> RequestLog:
    """Start recording `target`'s requests; call `.external()` on the result later."""
    return RequestLog.attach(target)


def save_screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save a PNG of the page under test-artifacts/screenshots/<name>.png (gitignored)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "screenshot"
    path = SCREENSHOTS_DIR / f"{safe}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page)
    return path
