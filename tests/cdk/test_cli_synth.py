"""`make synth`: the pinned npm CDK CLI synthesizes the stack offline, cdk-nag included."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.cdk.conftest import REPO_DIR


def test_make_synth_runs_the_cli_offline(tmp_path: Path) -> None:
    out = tmp_path / "cdk.out"
    environment = {**os.environ, "AWS_EC2_METADATA_DISABLED": "true"}
    # No AWS credentials or region may be needed: the stack is environment-agnostic.
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        environment.pop(name, None)
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "synth",
            f"CDK_OUT={out}",
            "CDK_CONTEXT=-c cors_origins=https://interview.example.com -c turn=true",
        ],
        cwd=REPO_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    template = json.loads((out / "SpoolEcsStack.template.json").read_text())
    types = [resource["Type"] for resource in template["Resources"].values()]
    assert types.count("AWS::EC2::Instance") == 1
    assert "AWS::ApiGatewayV2::Api" in types
    assert "AWS::ECS::Service" in types
    report = json.loads((out / "validation-report.json").read_text())
    assert report["pluginReports"][0]["conclusion"] == "success"
    assert "End-of-life" not in result.stderr and "end-of-life" not in result.stderr
