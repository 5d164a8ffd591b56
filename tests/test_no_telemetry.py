"""interview.no_telemetry: no library the service runs reports home or leaves an identifier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from interview.config import PROJECT_DIR
from interview.no_telemetry import SWITCHES
from interview.speech.model_files import ModelPaths, models_dir_from_env


def run_clean(code: str, home: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter with a bare environment: no switch set from outside."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home), **extra}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_importing_the_package_forces_every_switch_off(tmp_path: Path):
    # Even a deployment that sets them the other way gets them off.
    result = run_clean(
        "import interview, json, os; print(json.dumps({k: os.environ.get(k) for k in "
        f"{sorted(SWITCHES)!r}}}))",
        tmp_path,
        GRADIO_ANALYTICS_ENABLED="True",
        ORT_DISABLE_TELEMETRY="0",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == SWITCHES


def test_onnx_runtime_keeps_no_device_id_and_no_event_queue(tmp_path: Path):
    """ONNX Runtime's Linux telemetry writes ~/.cache/Microsoft/.../deviceid and an event
    database for upload on its first session unless ORT_DISABLE_TELEMETRY is set first."""
    vad_model = ModelPaths(models_dir_from_env()).silero_vad
    assert vad_model.exists(), "make models first"
    load = (
        "import onnxruntime as ort; "
        f"ort.InferenceSession({str(vad_model)!r}, providers=['CPUExecutionProvider'])"
    )
    result = run_clean(f"import interview; {load}", tmp_path)
    assert result.returncode == 0, result.stderr
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == [], written
    assert "telemetry" not in result.stderr.lower(), result.stderr
