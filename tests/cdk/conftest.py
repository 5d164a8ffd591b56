"""One synthesized SpoolEcsStack per configuration, shared by every CDK test of the session.

Synthesis runs in process (no CLI, no AWS account), with cdk-nag as the real entry point adds
it, so a finding fails these fixtures; test_cli_synth.py covers the npm CLI.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO_DIR = Path(__file__).resolve().parents[2]
CDK_DIR = REPO_DIR / "cdk"


def _node_major() -> str:
    try:
        return subprocess.run(
            ["node", "-p", "process.versions.node.split('.')[0]"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


# jsii prints a large end-of-life box on every import under an old Node; set before aws_cdk loads.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", _node_major())
if str(CDK_DIR) not in sys.path:
    sys.path.insert(0, str(CDK_DIR))

from aws_cdk import App  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

ORIGINS = "https://interview.example.com,https://admin.example.com"
EXTERNAL_TURN = "turn.example.com:3478"


@dataclass
class Synth:
    """A synthesized stack: its template (raw and for assertions) and cdk-nag's report."""

    template: Template
    raw: dict[str, Any]
    report: dict[str, Any]

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            name: resource
            for name, resource in self.raw["Resources"].items()
            if resource["Type"] == resource_type
        }

    def only(self, resource_type: str) -> dict[str, Any]:
        found = list(self.resources(resource_type).values())
        assert len(found) == 1, f"expected one {resource_type}, found {len(found)}"
        return found[0]["Properties"]

    def logical_id(self, resource_type: str) -> str:
        (name,) = self.resources(resource_type)
        return name


def _entry_point() -> ModuleType:
    """cdk/app.py, the same build() the CLI runs (the repository's own app.py is another)."""
    spec = importlib.util.spec_from_file_location("spool_cdk_app", CDK_DIR / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthesize(context: dict[str, Any], outdir: Path) -> Synth:
    cdk_app = App(context=context, outdir=str(outdir))
    _entry_point().build(cdk_app)
    assembly = cdk_app.synth()
    raw = assembly.get_stack_by_name("SpoolEcsStack").template
    report = json.loads((outdir / "validation-report.json").read_text())
    return Synth(template=Template.from_json(raw), raw=raw, report=report)


@pytest.fixture(scope="session")
def external_turn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    """The stack using a TURN server run elsewhere (no TURN instance here)."""
    yield synthesize(
        {"cors_origins": ORIGINS, "turn_server": EXTERNAL_TURN, "turn_tls_port": "5349"},
        tmp_path_factory.mktemp("cdk-external-turn"),
    )


@pytest.fixture(scope="session")
def turn_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synth]:
    """The stack with its own TURN server (-c turn=true), configured from turn/turnserver.conf."""
    yield synthesize(
        {"cors_origins": ORIGINS, "turn": "true"},
        tmp_path_factory.mktemp("cdk-turn-instance"),
    )
