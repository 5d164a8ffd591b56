"""The Gradio microphone's signaling (ui/voice_signaling.py) on the service's real Runtime.

While the service drains, the REST offer route answers 503 (app.py's RefuseWhileDraining); the
Gradio component reaches the same VoiceGateway through Gradio's own routes, which that middleware
does not see, so it must refuse a new connection itself. These make the calls ui/gradio_host.py
makes for the component, on a runtime built from Settings with voice off (the offer is refused
before any audio engine would be needed). tests/ui/test_gradio_host_contract.py drives the same
calls through Gradio's route.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from harness.runtime import wait_until_ready
from interview.config import Settings
from interview.runtime import Runtime
from interview.voice.rtc import Answer
from ui.gradio_app import DemoUI
from ui.gradio_host import IceCandidate, Refusal
from ui.voice_signaling import GatewaySignaling

SDP = "v=0\r\n"
CONNECTION = "browser-connection-1"


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    runtime = Runtime.build(
        Settings(database_url=f"sqlite:///{tmp_path}/spool.db", voice_enabled=False)
    )
    await runtime.start()
    try:
        await wait_until_ready(runtime)
        yield runtime
    finally:
        await runtime.stop()


class Page:
    """One browser tab of the Gradio UI with an interview started and the microphone attached."""

    def __init__(self, runtime: Runtime) -> None:
        self.ui = DemoUI(runtime)
        self.signaling = GatewaySignaling(runtime.voice, runtime.service, self.ui)
        self.hash = uuid.uuid4().hex[:11]
        self.offers: list[str] = []
        gateway_offer = runtime.voice.offer

        async def recording_offer(session: Any, sdp: str, type_: str) -> Answer:
            self.offers.append(session.id)
            return await gateway_offer(session, sdp, type_)

        runtime.voice.offer = recording_offer  # type: ignore[method-assign]

    async def start(self) -> str:
        await self.ui.start(self.hash, self.ui.runtime.settings.default_plan_id)
        session_id = self.ui.session_id_for(self.hash)
        assert session_id is not None
        return session_id

    async def offer(self) -> dict[str, str] | Refusal:
        return await self.signaling.offer(self.hash, CONNECTION, SDP)

    def voice_note(self) -> str | None:
        return self.ui.pages[self.hash].voice_note


async def test_the_microphone_reaches_the_gateway_while_the_service_runs(runtime: Runtime):
    # The control: the same call goes through to the gateway, which refuses it for its own
    # reason here (voice is off on this runtime).
    page = Page(runtime)
    session_id = await page.start()
    answer = await page.offer()
    assert page.offers == [session_id]
    assert isinstance(answer, Refusal)
    assert answer.code == "voice_unavailable"
    assert answer.message == page.voice_note()


async def test_a_new_voice_connection_is_refused_while_draining(runtime: Runtime):
    page = Page(runtime)
    session_id = await page.start()
    runtime.draining = True  # as on SIGTERM (app.py's DrainingServer)

    answer = await page.offer()

    # Refused like POST /{id}/rtc/offer (code "draining"), before the gateway is asked.
    assert isinstance(answer, Refusal)
    assert answer.code == "draining"
    assert "shutting down" in answer.message
    assert page.offers == []
    assert page.signaling.peers == {}
    # The page says why, and its interview stays open: typed answers go on.
    assert page.voice_note() == answer.message
    row = await runtime.service.open_session(session_id)
    assert row.id == session_id
    view = await page.ui.answer(page.hash, "A typed answer while draining.")
    assert [m["role"] for m in view.transcript][-2:] == ["user", "assistant"]


async def test_draining_does_not_refuse_candidates_of_live_connections(runtime: Runtime):
    # ICE candidates belong to connections made before the drain: they are not new connections,
    # so they are handled as ever (here: no such connection).
    page = Page(runtime)
    await page.start()
    runtime.draining = True
    refused = await page.signaling.candidate("unknown", IceCandidate("", None, None))
    assert refused is not None and refused.code == "unknown_connection"


async def test_a_page_without_an_interview_gets_no_voice(runtime: Runtime):
    page = Page(runtime)
    configuration = await page.signaling.rtc_configuration(page.hash)
    assert isinstance(configuration, Refusal)
    assert configuration.message.startswith("Start an interview first")
    answer = await page.offer()
    assert isinstance(answer, Refusal) and answer.code == "no_interview"
    assert page.offers == []

    await page.start()
    configuration = await page.signaling.rtc_configuration(page.hash)
    assert isinstance(configuration, dict)
    assert isinstance(configuration["iceServers"], list)
    await page.ui.end(page.hash)
    ended = await page.signaling.rtc_configuration(page.hash)
    assert isinstance(ended, Refusal) and "has ended" in ended.message
