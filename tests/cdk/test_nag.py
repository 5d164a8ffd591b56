"""cdk-nag AwsSolutions: no unacknowledged finding, and every acknowledgment earns its place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import spool_ecs.nag
from aws_cdk import Acknowledgment, Validations

from tests.cdk.conftest import ORIGINS, Synth, synthesize


def _plugin(synth: Synth) -> dict[str, Any]:
    (plugin,) = synth.report["pluginReports"]
    assert plugin["pluginName"] == "AwsSolutions"
    return plugin


@pytest.mark.parametrize("configuration", ["external_turn", "turn_instance"])
def test_no_unacknowledged_finding(configuration: str, request: pytest.FixtureRequest) -> None:
    plugin = _plugin(request.getfixturevalue(configuration))
    assert plugin["conclusion"] == "success"
    assert plugin["violations"] == []


@pytest.mark.parametrize("configuration", ["external_turn", "turn_instance"])
def test_every_acknowledgment_has_a_reason(
    configuration: str, request: pytest.FixtureRequest
) -> None:
    suppressed = _plugin(request.getfixturevalue(configuration))["suppressedViolations"]
    assert suppressed
    for finding in suppressed:
        assert len(finding["reason"].split()) >= 8, finding["ruleName"]


def test_acknowledge_refuses_an_empty_reason() -> None:
    with pytest.raises(ValueError, match="real reason"):
        spool_ecs.nag.acknowledge(None, "AwsSolutions-EC23", "ok")
    with pytest.raises(ValueError, match="not an AwsSolutions rule"):
        spool_ecs.nag.acknowledge(None, "EC23", "a reason that is long enough to pass the bar")


class _Forgetful:
    """Validations.of(scope) whose acknowledge() records the rule and suppresses nothing."""

    def __init__(self, real: Validations, seen: list[str]) -> None:
        self.real = real
        self.seen = seen

    def acknowledge(self, *rules: Acknowledgment) -> None:
        self.seen.extend(rule.id.split("::", 1)[1] for rule in rules)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_without_the_acknowledgments_synthesis_fails_on_exactly_those_rules(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Nag really runs (a finding fails synth), and no acknowledgment is stale."""
    seen: list[str] = []
    real_of = Validations.of
    monkeypatch.setattr(Validations, "of", lambda scope: _Forgetful(real_of(scope), seen))
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        synthesize({"cors_origins": ORIGINS, "turn": "true"}, tmp_path)
    report = json.loads((tmp_path / "validation-report.json").read_text())
    (plugin,) = report["pluginReports"]
    assert plugin["conclusion"] == "failure"
    assert {finding["ruleName"] for finding in plugin["violations"]} == set(seen)
