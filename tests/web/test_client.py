"""The TypeScript client's unit tests (ui/web/test, Node's own test runner), run as part of pytest.

They check the client's logic with a fake server and fake WebRTC objects: set-up order, trickle
ICE, typed errors, reconnecting, SSE resume, typed answers retried with their Idempotency-Key
(over real HTTP: test_answer_retries.py). `make test` installs ui/web's packages first
(`make web`); the real-browser path is tests/e2e/test_web_demo.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "ui" / "web"


def test_the_typescript_client_unit_tests_pass():
    npm = shutil.which("npm")
    assert npm is not None, "npm is needed for the web client (see the README)"
    assert (WEB / "node_modules" / "esbuild").is_dir(), "run `make web` to install ui/web"
    run = subprocess.run(
        [npm, "test", "--silent"], cwd=WEB, capture_output=True, text=True, timeout=180
    )
    summary = [line for line in run.stdout.splitlines() if line.startswith(("# pass", "# fail"))]
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "# fail 0" in summary and "# pass 0" not in summary, summary
