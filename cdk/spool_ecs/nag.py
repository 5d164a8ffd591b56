"""cdk-nag's AwsSolutions pack and the one way this stack acknowledges a finding.

Every acknowledgment carries its reason next to the construct it excuses; tests read them back
from the construct metadata to check that none is empty.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

PACK = "AwsSolutions"


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge `rule` (e.g. "AwsSolutions-EC23" or "AwsSolutions-IAM5[Resource::*]")."""
    if not rule.startswith(f"{PACK}-"):
        raise ValueError(f"not an {PACK} rule: {rule!r}")
    if len(reason.split()) < 8:
        raise ValueError(f"acknowledging {rule} needs a real reason, not {reason!r}")
    Validations.of(scope).acknowledge(Acknowledgment(id=f"{PACK}::{rule}", reason=reason))


def add_checks(app: App) -> None:
    """Run the AwsSolutions pack at synth: any unacknowledged finding fails the synthesis."""
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
