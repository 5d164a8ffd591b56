"""schemathesis over the live /openapi.json of a real voice-enabled server: generated requests,
valid and not, to every operation, with a real session (id and token) on each session route;
no 5xx, and every response (status, content type, headers, body) as the contract says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.app_server import AppServer
from tests.conftest import _database_url

# Per operation; schemathesis's coverage phase adds its own boundary and negative cases.
MAX_EXAMPLES = 20
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    # Invalid input is refused with a 4xx, and a missing required header too.
    "negative_data_rejection",
    "missing_required_header",
    # A method the path does not serve is a 405 with Allow (OPTIONS: Allow lists the path's).
    "unsupported_method",
    "allow_header_conformance",
)
# How invalid input may be refused (4xx only).
REFUSALS = (400, 401, 403, 404, 405, 406, 408, 409, 413, 415, 422, 428, 429, 431)
# A failure names its seed: SCHEMATHESIS_SEED=<seed> replays that run.
SEED = os.environ.get("SCHEMATHESIS_SEED")
# Not checked, by design:
# - ignored_auth: a wrong token is a 404 like an unknown session (so neither reveals the
#   other), where schemathesis expects 401/403.
# - positive_data_acceptance: a schema-valid body can still be refused by what the schema cannot
#   say: a plan or voice this server does not have, an answer with no visible character, an SDP
#   that is no offer (all 4xx with their own codes, documented).


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def voice_server(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[AppServer]:
    directory = tmp_path_factory.mktemp(f"schemathesis-{request.param}")
    server = AppServer(
        directory / "server.log",
        {
            "DATABASE_URL": _database_url(request.param, request, str(directory)),
            # Voice on, so the WebRTC routes answer as in production (not 503 voice_disabled).
            "VOICE_ENABLED": "true",
            "SPEECH_CACHE_DIR": str(directory / "speech-cache"),
            # An /events response ends after this: the run does not wait 25 s per stream.
            "EVENTS_STREAM_SECONDS": "1",
        },
    )
    server.start(timeout=120)  # healthy once the speech models are loaded
    yield server
    server.stop()


def _config(server: AppServer, spec: dict) -> str:
    """schemathesis.toml: each session operation gets its own real session and token, so
    ending one interview does not close the others' routes."""
    lines = [
        f"[generation]\nmax-examples = {MAX_EXAMPLES}\n",
        # Invalid input may also be refused for its size (413: a body over MAX_REQUEST_BYTES,
        # 431: headers); never with a 5xx (schemathesis's default list allows one).
        "[checks.negative_data_rejection]\nexpected-statuses = "
        f"{[str(s) for s in REFUSALS]}\n".replace("'", '"'),
    ]
    with httpx.Client(base_url=server.api, timeout=10) as client:
        for path, operations in spec["paths"].items():
            if "{session_id}" not in path:
                continue
            for method in operations:
                started = client.post("/start", json={"user_id": "schemathesis"})
                assert started.status_code == 201, started.text
                session = started.json()
                lines.append(
                    f'[[operations]]\ninclude-path = "{path}"\n'
                    f'include-method = "{method.upper()}"\n'
                    f'parameters = {{ "path.session_id" = "{session["session_id"]}" }}\n'
                    f'headers = {{ Authorization = "Bearer {session["token"]}" }}\n'
                )
    return "\n".join(lines)


@pytest.mark.models
@pytest.mark.timeout(600)
def test_the_live_contract_holds_for_generated_requests(voice_server: AppServer, tmp_path: Path):
    spec = httpx.get(f"{voice_server.base_url}/openapi.json", timeout=10).json()
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(voice_server, spec))
    began = time.monotonic()
    run = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
            f"{voice_server.base_url}/openapi.json",
            "--checks", ",".join(CHECKS),
            "--workers", "1",
            "--request-timeout", "10",
            "--no-color",
            *(["--seed", SEED] if SEED else []),
        ],
        cwd=tmp_path,  # its cache (.schemathesis/) stays out of the repository
        capture_output=True,
        text=True,
        timeout=540,
    )  # fmt: skip
    # Generated bodies can be megabytes of one repeated character: shown shortened.
    output = re.sub(r"((?:\\u[0-9a-f]{4})|[^\n])\1{40,}", r"\1\1\1[...]", run.stdout + run.stderr)
    print(f"schemathesis: {time.monotonic() - began:.0f} s\n{output[-3000:]}")
    assert run.returncode == 0, output[-20000:]
    # It ran every operation of the document, and the server logged no unhandled error.
    operations = sum(len(methods) for methods in spec["paths"].values())
    assert f"Tested: {operations}" in output, output[-3000:]
    log = voice_server.log()
    assert "unhandled_error" not in log and '"status": 500' not in log
