"""GradioHost's own behaviour: a 'starting' page until the Blocks are built (only once the app
says they may be), a page that says so when the build fails, and a clean stop with the app."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import gradio as gr
import httpx
import pytest
import structlog

from ui.gradio_host import RELOAD_SECONDS, GradioHost

READY_SECONDS = 60


def small_blocks() -> gr.Blocks:
    with gr.Blocks(analytics_enabled=False) as blocks:
        gr.Markdown("A small page", elem_id="small")
    return blocks


def client(host: GradioHost) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=host), base_url="http://test")


async def served(host: GradioHost) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while host.app is None:
        assert host.error is None, host.error
        assert time.monotonic() < deadline, "the Blocks were not served in time"
        await asyncio.sleep(0.05)


async def websocket_close_code(host: GradioHost) -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/queue/join", "headers": []}
    await host(scope, receive, send)
    [message] = sent
    assert message["type"] == "websocket.close"
    return int(message["code"])


async def test_a_starting_page_until_the_app_lets_it_build() -> None:
    may_build = False
    builds: list[bool] = []

    def build() -> gr.Blocks:
        builds.append(may_build)
        return small_blocks()

    host = GradioHost(build, ready_to_build=lambda: may_build)
    async with host.running(), client(host) as http:
        await asyncio.sleep(0.5)  # a few polls of ready_to_build
        starting = await http.get("/")
        assert starting.status_code == 503
        assert starting.headers["retry-after"] == str(RELOAD_SECONDS)
        assert f'http-equiv="refresh" content="{RELOAD_SECONDS}"' in starting.text
        assert "The demo UI is starting" in starting.text
        assert await websocket_close_code(host) == 1013  # "try again later"
        assert builds == []

        may_build = True
        await served(host)
        assert builds == [True]
        page = await http.get("/")
        assert page.status_code == 200
        assert "A small page" in page.text


async def test_a_failed_build_is_said_on_the_page() -> None:
    def build() -> gr.Blocks:
        raise RuntimeError("no plans")

    host = GradioHost(build)
    async with host.running(), client(host) as http:
        deadline = time.monotonic() + READY_SECONDS
        while host.error is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        page = await http.get("/")
        assert page.status_code == 503
        assert "The demo UI failed to start" in page.text
        assert host.error == "RuntimeError: no plans"


async def test_the_host_stops_with_the_app_while_waiting_or_serving(
    capsys: pytest.CaptureFixture[str],
) -> None:
    waiting = GradioHost(small_blocks, ready_to_build=lambda: False)
    async with asyncio.timeout(30):  # leaving running() must not wait for a build
        async with waiting.running():
            await asyncio.sleep(0.3)
    assert waiting.app is None and waiting.error is None  # stopped, not failed

    host = GradioHost(small_blocks)
    with structlog.testing.capture_logs() as logs:
        async with host.running():
            await served(host)
    assert host.app is None
    async with client(host) as http:
        assert (await http.get("/")).status_code == 503
    # gr.mount_gradio_app print()s the path it mounts: to the log, not stdout.
    assert "new" not in capsys.readouterr().out
    printed = [entry["text"] for entry in logs if entry["event"] == "gradio_print"]
    assert printed == ["new "], f"gr.mount_gradio_app's print() changed: {printed}"
