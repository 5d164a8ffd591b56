"""The stack's choices, read from CDK context (`-c key=value` or cdk.json) in one place.

Context values given on the command line arrive as strings, values from cdk.json or a test's
`App(context=...)` may be native JSON, so every reader accepts both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from constructs import Node

REPO_DIR = Path(__file__).resolve().parents[2]
DEFAULT_TURN_CONFIG = REPO_DIR / "turn" / "turnserver.conf"

# "host" or "host:port", the shape interview/config.py accepts for TURN_SERVER.
_TURN_SERVER = re.compile(r"^[A-Za-z0-9.-]+(:\d{1,5})?$")


class ContextError(ValueError):
    """A context value is missing or malformed; the message names the key and the fix."""


def _text(node: Node, key: str) -> str | None:
    value = node.try_get_context(key)
    if value is None:
        return None
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    text = str(value).strip()
    return text or None


def _flag(node: Node, key: str, default: bool) -> bool:
    value = node.try_get_context(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise ContextError(f"context {key!r} must be true or false, not {value!r}")


def _int(node: Node, key: str, default: int, low: int, high: int) -> int:
    value = node.try_get_context(key)
    if value is None:
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ContextError(f"context {key!r} must be a whole number, not {value!r}") from None
    if not low <= number <= high:
        raise ContextError(f"context {key!r} must be between {low} and {high}, not {number}")
    return number


def _origins(node: Node) -> list[str]:
    text = _text(node, "cors_origins")
    if not text:
        raise ContextError(
            "context 'cors_origins' is required: the comma-separated origins of the frontend "
            "that calls the API, e.g. -c cors_origins=https://interview.example.com"
        )
    origins = [origin.strip().rstrip("/") for origin in text.split(",") if origin.strip()]
    for origin in origins:
        # A wildcard cannot be combined with credentials (the web client sends them).
        if origin == "*" or not re.fullmatch(r"https?://[^/\s,]+", origin):
            raise ContextError(
                f"context 'cors_origins' holds {origin!r}: list full origins such as "
                "https://interview.example.com (no '*', no path)"
            )
    return origins


@dataclass(frozen=True)
class StackSettings:
    """Everything the operator may choose; the defaults are the documented ones (cdk/README.md)."""

    cors_origins: list[str]
    # The image: a full URI wins; otherwise the ECR repository in the stack's account and region.
    image_uri: str | None = None
    ecr_repository: str = "spool-interview"
    image_tag: str = "latest"
    # TURN: an existing server ("host" or "host:port"), and/or one built by this stack.
    turn_server: str | None = None
    turn_tls_port: int | None = None
    turn_instance: bool = False
    turn_instance_type: str = "t3.small"
    turn_config: Path = DEFAULT_TURN_CONFIG
    # Fargate sizing: the local speech models want two vCPUs per task (benchmarks/README.md).
    task_cpu: int = 2048
    task_memory_mib: int = 4096
    min_tasks: int = 2
    max_tasks: int = 6
    max_concurrent_interviews: int = 4
    # ALB cookie stickiness: no longer needed (any task serves any request, the one holding a
    # call relays what only it can do); kept as a switch, off by default.
    stickiness: bool = False
    db_instance_type: str = "t4g.small"
    api_rate_limit: int = 50
    api_burst_limit: int = 100
    alarm_email: str | None = None

    @classmethod
    def from_context(cls, node: Node) -> StackSettings:
        turn_server = _text(node, "turn_server")
        if turn_server and not _TURN_SERVER.fullmatch(turn_server):
            raise ContextError(
                f"context 'turn_server' must be host or host:port, not {turn_server!r}"
            )
        tls = node.try_get_context("turn_tls_port")
        min_tasks = _int(node, "min_tasks", cls.min_tasks, 1, 100)
        max_tasks = _int(node, "max_tasks", max(cls.max_tasks, min_tasks), 1, 100)
        if max_tasks < min_tasks:
            raise ContextError("context 'max_tasks' must be at least 'min_tasks'")
        config = _text(node, "turn_config")
        return cls(
            cors_origins=_origins(node),
            image_uri=_text(node, "image_uri"),
            ecr_repository=_text(node, "ecr_repository") or cls.ecr_repository,
            image_tag=_text(node, "image_tag") or cls.image_tag,
            turn_server=turn_server,
            turn_tls_port=None if tls is None else _int(node, "turn_tls_port", 0, 1, 65535),
            turn_instance=_flag(node, "turn", default=False),
            turn_instance_type=_text(node, "turn_instance_type") or cls.turn_instance_type,
            turn_config=Path(config) if config else DEFAULT_TURN_CONFIG,
            task_cpu=_int(node, "task_cpu", cls.task_cpu, 256, 16384),
            task_memory_mib=_int(node, "task_memory", cls.task_memory_mib, 512, 122880),
            min_tasks=min_tasks,
            max_tasks=max_tasks,
            max_concurrent_interviews=_int(
                node, "max_concurrent_interviews", cls.max_concurrent_interviews, 1, 64
            ),
            stickiness=_flag(node, "stickiness", default=False),
            db_instance_type=_text(node, "db_instance_type") or cls.db_instance_type,
            api_rate_limit=_int(node, "api_rate_limit", cls.api_rate_limit, 1, 10000),
            api_burst_limit=_int(node, "api_burst_limit", cls.api_burst_limit, 1, 5000),
            alarm_email=_text(node, "alarm_email"),
        )
