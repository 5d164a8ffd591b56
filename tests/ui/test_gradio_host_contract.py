"""Contracts with the Gradio and fastrtc internals that ui/gradio_host.py relies on.

One test per internal, each failing with its name when an upgrade changes it (gradio 5.50.0 and
fastrtc 0.0.34 pass); ui/gradio_host.py's docstring says what each is for and which upstream
change would remove it. They drive a small Blocks with the real voice component, served by
GradioHost in a real uvicorn server on 127.0.0.1: no browser, no models.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastrtc
import gradio as gr
import httpx
import pytest
import structlog
import uvicorn
from fastapi import FastAPI
from fastrtc import WebRTC

from harness.ports import free_port
from ui.gradio_host import (
    EXTERNAL_HEAD,
    UI_PATH,
    GradioHost,
    IceCandidate,
    Refusal,
    voice_component,
)

READY_SECONDS = 60
SDP_ANSWER = {"sdp": "v=0\r\nanswer", "type": "answer"}
ICE = {"iceServers": [{"urls": ["turn:127.0.0.1:3478"], "username": "u", "credential": "c"}]}
CANDIDATE = "candidate:1 1 udp 2122260223 192.0.2.1 50000 typ host generation 0 ufrag a b c"
REFUSED = "refused-page"


@dataclass
class RecordingSignaling:
    """ui.gradio_host.VoiceSignaling that records each call: the page `REFUSED` is refused."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)

    async def rtc_configuration(self, page: str) -> dict[str, Any] | Refusal:
        self.calls.append(("rtc_configuration", page))
        return Refusal("no_interview", "start first") if page == REFUSED else ICE

    async def offer(self, page: str, connection: str, sdp: str) -> dict[str, str] | Refusal:
        self.calls.append(("offer", page, connection, sdp))
        return Refusal("draining", "shutting down") if page == REFUSED else SDP_ANSWER

    async def candidate(self, connection: str, candidate: IceCandidate) -> Refusal | None:
        self.calls.append(("candidate", connection, candidate))
        return Refusal("unknown_connection", "no such id") if connection == REFUSED else None

    async def stop(self, connection: str) -> None:
        self.calls.append(("stop", connection))


@dataclass
class Served:
    base_url: str
    host: GradioHost
    signaling: RecordingSignaling

    def mic_id(self) -> int:
        config = httpx.get(f"{self.base_url}{UI_PATH}/config", timeout=10).json()
        [mic] = [c for c in config["components"] if c["props"].get("elem_id") == "mic"]
        return int(mic["id"])

    def component_call(self, fn_name: str, data: Any, page: str = "page-1") -> httpx.Response:
        """One server-function call of the page's component, as gradio's page makes it."""
        body = {"component_id": self.mic_id(), "fn_name": fn_name, "data": data}
        return httpx.post(
            f"{self.base_url}{UI_PATH}/gradio_api/component_server",
            json={**body, "session_hash": page},
            timeout=10,
        )


def build_blocks(signaling: RecordingSignaling) -> gr.Blocks:
    with gr.Blocks(analytics_enabled=False) as blocks:
        voice_component(
            signaling, label="Talk", elem_id="mic", button_labels={"start": "Talk", "stop": "Stop"}
        )
        text = gr.Textbox(elem_id="text")
        gr.Button("Shout").click(lambda s: s.upper(), text, text, api_name="shout")
    return blocks


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    signaling = RecordingSignaling()
    host = GradioHost(lambda: build_blocks(signaling))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with host.running():
            yield

    app = FastAPI(lifespan=lifespan)
    app.mount(UI_PATH, host)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{server.config.port}"
    deadline = time.monotonic() + READY_SECONDS
    while True:
        try:
            if httpx.get(f"{base_url}{UI_PATH}/", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert host.error is None, host.error
        assert time.monotonic() < deadline, "the Blocks were not served in time"
        time.sleep(0.1)
    yield Served(base_url, host, signaling)
    server.should_exit = True
    thread.join(timeout=30)
    assert not thread.is_alive(), "the server did not stop"


def test_fastrtc_webrtc_still_has_the_server_functions_we_replace(served: Served) -> None:
    config = httpx.get(f"{served.base_url}{UI_PATH}/config", timeout=10).json()
    [mic] = [c for c in config["components"] if c["props"].get("elem_id") == "mic"]
    assert set(mic["props"]["server_fns"]) == {"turn", "offer", "quit_output_stream"}, (
        "fastrtc's WebRTC server functions changed (its page calls what server_fns lists); "
        "ui/gradio_host.voice_component replaces turn, offer and quit_output_stream"
    )


def test_component_server_calls_the_instance_functions_with_the_page_of_the_call(
    served: Served,
) -> None:
    """gradio's component_server route (gradio/routes.py) looks the function up on the component
    instance by `fn_name`, and the session hash is in the call's JSON body."""
    turn = served.component_call("turn", None, page="page-turn")
    assert turn.status_code == 200, turn.text
    assert turn.json() == ICE, "component_server did not call the instance's `turn`"
    assert served.signaling.calls[-1] == ("rtc_configuration", "page-turn"), (
        "the session hash no longer reaches a component server function in the JSON body "
        "of its request (ui/gradio_host._page_of)"
    )

    offer = {"type": "offer", "sdp": "v=0\r\noffer", "webrtc_id": "connection-1"}
    answered = served.component_call("offer", offer, page="page-offer")
    assert answered.json() == SDP_ANSWER
    assert served.signaling.calls[-1] == ("offer", "page-offer", "connection-1", "v=0\r\noffer")

    # As the browser's RTCIceCandidate.toJSON() sends it.
    init = {"candidate": CANDIDATE, "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "a"}
    ice = {"type": "ice-candidate", "webrtc_id": "connection-1", "candidate": init}
    assert served.component_call("offer", ice).json() == {"status": "success"}
    assert served.signaling.calls[-1] == (
        "candidate",
        "connection-1",
        IceCandidate(CANDIDATE, "0", 0),
    )

    stopped = served.component_call("quit_output_stream", {"webrtc_id": "connection-1"})
    assert stopped.json() == {"success": True}
    assert served.signaling.calls[-1] == ("stop", "connection-1")


def test_component_server_calls_only_functions_with_the_server_marker(served: Served) -> None:
    # gradio.components.base.server marks a function `_is_server_fn`; the route refuses others.
    assert getattr(gr.components.base.server(lambda: None), "_is_server_fn", False), (
        "gradio.components.base.server no longer marks a function with `_is_server_fn`"
    )
    unmarked = served.component_call("get_config", None)
    assert unmarked.status_code == 404, (
        "gradio's component_server calls a component method without the @server marker"
    )


def test_refusals_reach_the_page_in_fastrtcs_shapes(served: Served) -> None:
    offer = {"type": "offer", "sdp": "v=0", "webrtc_id": "connection-2"}
    refused = served.component_call("offer", offer, page=REFUSED).json()
    meta = {"error": "draining", "message": "shutting down"}
    assert refused == {"status": "failed", "meta": meta}
    ice = {"type": "ice-candidate", "webrtc_id": REFUSED, "candidate": {"candidate": ""}}
    failed = served.component_call("offer", ice).json()
    assert failed["status"] == "failed" and failed["meta"]["error"] == "unknown_connection"
    assert served.component_call("turn", None, page=REFUSED).json() == {"error": "start first"}


def test_a_malformed_signaling_message_is_a_400(served: Served) -> None:
    calls = len(served.signaling.calls)
    for fn_name, data in [
        ("offer", "not an object"),
        ("offer", {"type": "offer", "webrtc_id": "c"}),  # no sdp
        ("offer", {"type": "answer", "sdp": "v=0", "webrtc_id": "c"}),
        ("offer", {"type": "ice-candidate", "webrtc_id": "c", "candidate": {"sdpMLineIndex": -1}}),
        ("quit_output_stream", None),
    ]:
        response = served.component_call(fn_name, data)
        assert response.status_code == 400, (fn_name, data, response.text)
        assert "Malformed voice signaling message" in response.json()["detail"]
    assert len(served.signaling.calls) == calls  # nothing reached the signaling


async def test_fastrtcs_own_answers_have_the_shapes_its_page_reads() -> None:
    """The shapes voice_component answers in are the stock component's (fastrtc/webrtc.py and
    webrtc_connection_mixin.py), and its page (templates/component) reads them."""
    stock = WebRTC(render=False)
    unknown = {"type": "ice-candidate", "webrtc_id": "nobody", "candidate": {"candidate": "x"}}
    response = await WebRTC.offer(stock, unknown)
    assert json.loads(bytes(response.body)) == {
        "status": "failed",
        "meta": {"error": "unknown_connection"},
    }, "fastrtc's refusal is no longer {'status': 'failed', 'meta': {'error': code}}"
    assert await WebRTC.quit_output_stream(stock, {"webrtc_id": "nobody"}) == {"success": True}

    def broken() -> dict[str, Any]:
        raise RuntimeError("no configuration")

    failing = WebRTC(render=False, rtc_configuration=broken)
    assert await WebRTC.turn(failing, None) == {"error": "no configuration"}, (
        "fastrtc's turn no longer answers {'error': message} when it has no configuration"
    )

    bundle = "".join(
        path.read_text(errors="replace")
        for path in (Path(fastrtc.__file__).parent / "templates" / "component").glob("index*.js")
    )
    assert 'status === "failed"' in bundle, "fastrtc's page no longer reads status 'failed'"
    assert re.search(r"if \((\w+)\.error\) \{\s*\w+\(\"error\", \1\.error\)", bundle), (
        "fastrtc's page no longer shows the `error` of turn's answer"
    )
    assert "quit_output_stream(" in bundle, "fastrtc's page no longer calls quit_output_stream"


async def test_gradios_page_has_the_internet_bound_tags_we_strip(served: Served) -> None:
    # Gradio's own page, from the host app GradioHost serves (without its rewriting).
    assert served.host.app is not None
    transport = httpx.ASGITransport(app=served.host.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gradio") as client:
        raw = (await client.get("/")).text
    stripped = [tag.decode() for tag in EXTERNAL_HEAD.findall(raw.encode())]
    for expected in ("fonts.googleapis.com", "fonts.gstatic.com", "cdnjs", "manifest"):
        assert any(expected in tag for tag in stripped), (
            f"gradio's page template (templates/frontend/index.html) no longer has the {expected} "
            f"tag ui/gradio_host.EXTERNAL_HEAD strips: review the pattern. Stripped: {stripped}"
        )


def test_the_served_page_reaches_for_nothing_outside(served: Served) -> None:
    # Asked as a browser asks (compression accepted), the page GradioHost serves has none of
    # those tags, and nothing else internet-bound.
    page = httpx.get(
        f"{served.base_url}{UI_PATH}/", headers={"Accept-Encoding": "br, gzip"}, timeout=10
    )
    assert page.status_code == 200
    fetched = re.findall(r"""(?:src|href)\s*=\s*["']?([^"'\s>]+)""", page.text)
    fetched += re.findall(r"""url\(\s*["']?([^"')\s]+)""", page.text)
    external = [url for url in fetched if re.match(r"(?:[a-z]+:)?//", url)]
    assert external == [], f"gradio's page gained internet-bound tags: {external}"
    assert 'rel="manifest"' not in page.text
    # What the page needs is still there and served.
    assert "window.gradio_config" in page.text
    assert any(url.endswith(".js") for url in fetched), fetched
    for url in fetched:
        asset = httpx.get(f"{served.base_url}{UI_PATH}/{url.removeprefix('./')}", timeout=10)
        assert asset.status_code == 200, url


def test_gradios_prints_go_to_the_log_not_stdout(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    with structlog.testing.capture_logs() as logs:
        assert served.component_call("turn", None).status_code == 200
    assert "content_type" not in capsys.readouterr().out
    printed = [entry["text"] for entry in logs if entry["event"] == "gradio_print"]
    assert any(text.startswith("content_type") for text in printed), (
        "gradio.routes no longer print()s on component calls (gradio issue #12030 fixed?): "
        "drop the print shadow of ui/gradio_host.quiet_gradio_prints for gradio.routes"
    )


def test_the_hosts_lifespan_starts_gradios_queue(served: Served) -> None:
    """gr.mount_gradio_app starts the Blocks' queue in the lifespan of the app it mounts on
    (GradioHost enters it): an event runs through the queue as the page sends it."""
    base = f"{served.base_url}{UI_PATH}/gradio_api"
    config = httpx.get(f"{served.base_url}{UI_PATH}/config", timeout=10).json()
    fn_index = next(d["id"] for d in config["dependencies"] if d["api_name"] == "shout")
    body = {"data": ["hello"], "fn_index": fn_index, "session_hash": "page-queue"}
    joined = httpx.post(f"{base}/queue/join", json=body, timeout=10)
    assert joined.status_code == 200, joined.text
    event_id = joined.json()["event_id"]
    params = {"session_hash": "page-queue"}
    with httpx.stream("GET", f"{base}/queue/data", params=params, timeout=30) as stream:
        for line in stream.iter_lines():
            message = json.loads(line.removeprefix("data: ")) if line.startswith("data:") else {}
            if message.get("event_id") == event_id and message["msg"] == "process_completed":
                assert message["output"]["data"] == ["HELLO"], message
                return
    raise AssertionError("mount_gradio_app's lifespan did not start gradio's queue")
