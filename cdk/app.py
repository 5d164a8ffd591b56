#!/usr/bin/env python3
"""The CDK app: `npx cdk synth` / `npx cdk deploy SpoolEcsStack` run this (see cdk.json)."""

from __future__ import annotations

import sys

from aws_cdk import App
from spool_ecs.nag import add_checks
from spool_ecs.settings import ContextError, StackSettings
from spool_ecs.stack import SpoolEcsStack


def build(app: App) -> SpoolEcsStack:
    """The stack and the cdk-nag checks, shared by this entry point and the tests."""
    stack = SpoolEcsStack(
        app,
        "SpoolEcsStack",
        settings=StackSettings.from_context(app.node),
        description="Spool Interview: API Gateway -> internal ALB -> ECS Fargate, PostgreSQL, TURN",
    )
    add_checks(app)
    return stack


def main() -> None:
    app = App()
    try:
        build(app)
    except (ContextError, FileNotFoundError, ValueError) as exc:
        sys.exit(f"SpoolEcsStack: {exc}")
    app.synth()


if __name__ == "__main__":
    main()
