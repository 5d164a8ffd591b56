"""The real service, started as `python app.py` in a subprocess on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from harness.ports import free_port

ROOT = Path(__file__).resolve().parents[1]

# The settings a developer's shell may hold that would change what a test's service does:
# its database, TURN, CORS, voice, which engines (model, STT, TTS, interviewer, the accurate
# pass) it uses, and its name among several instances.
ENGINE_AND_SERVICE_ENV = (
    "TURN_", "DATABASE_", "DB_", "CORS_", "OPENAI_", "VOICE_", "INTERVIEWER", "LLM_",
    "REPORT_EVALUATION", "EVALUATION_", "STT_ENGINE", "TTS_ENGINE", "END_OF_TURN_",
    "BARGE_IN_", "REPAIR_", "ECHO_", "CHECK_IN_", "INSTANCE_", "DRAIN_", "RATE_LIMIT_",
    "TRUSTED_PROXY_", "CLIENT_ADDRESS_", "EVENTS_MAX_", "REQUEST_BODY_", "ACCURATE_",
)  # fmt: skip
# Every test client is 127.0.0.1, and some tests start hundreds of interviews a minute: limits
# that only the tests of the limits (which set their own) ever reach.
GENEROUS_LIMITS = {
    "RATE_LIMIT_START": "100000/minute",
    "RATE_LIMIT_ANSWERS": "100000/minute",
    "EVENTS_MAX_STREAMS": "1000",
}


class AppServer:
    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self.env = env
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.base_url}/api/interview"

    def start(self, timeout: float = 30, expect_healthy: bool = True) -> None:
        """Start and wait for health: 200, or any answer when `expect_healthy` is False."""
        env = {
            k: v for k, v in os.environ.items() if not k.upper().startswith(ENGINE_AND_SERVICE_ENV)
        }
        # Voice loads speech models for seconds; only the tests that speak turn it on.
        env.update({"HOST": "127.0.0.1", "PORT": str(self.port), "VOICE_ENABLED": "false"})
        # A test client that stays silent would be checked in on, a turn its test does not
        # expect: the check-in tests turn it on.
        env["CHECK_IN_AFTER_SECONDS"] = "0"
        # Nothing routes to a test's server but the test: it need not stay up 5 s after SIGTERM
        # for a load balancer to notice. The drain and cluster tests set it as production does.
        env["DRAIN_MIN_SECONDS"] = "0.5"
        env.update(GENEROUS_LIMITS)
        env.update(self.env)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early; see {self.log_path}:\n{self.log()}")
            try:
                status = httpx.get(f"{self.api}/health", timeout=5).status_code
                if status == 200 or not expect_healthy:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server not healthy within {timeout}s:\n{self.log()}")

    def stop(self) -> int | None:
        """SIGTERM, as a process manager would; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def events(self, name: str) -> list[dict[str, Any]]:
        """The JSON lines of its log whose `event` is `name`, in order."""
        return log_events(self.log(), name)


def log_events(log: str, name: str) -> list[dict[str, Any]]:
    """The JSON lines of a service's `log` whose `event` is `name`, in order."""
    found = []
    for line in log.splitlines():
        if name not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:  # a library's stray print
            continue
        if isinstance(record, dict) and record.get("event") == name:
            found.append(record)
    return found
