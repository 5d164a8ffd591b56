"""Context keys: required ones named, malformed ones refused before anything is built."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App
from spool_ecs.settings import ContextError, StackSettings


def _settings(**context: Any) -> StackSettings:
    return StackSettings.from_context(App(context=context).node)


def test_defaults_need_only_the_cors_origins() -> None:
    settings = _settings(cors_origins="https://a.example.com/, https://b.example.com")
    assert settings.cors_origins == ["https://a.example.com", "https://b.example.com"]
    assert settings.turn_instance is False
    assert settings.turn_server is None
    assert (settings.min_tasks, settings.max_tasks) == (2, 6)
    assert settings.ecr_repository == "spool-interview"
    assert settings.stickiness is False


def test_native_json_context_values_are_accepted() -> None:
    settings = _settings(
        cors_origins=["https://a.example.com"], turn=True, min_tasks=3, stickiness=True
    )
    assert settings.cors_origins == ["https://a.example.com"]
    assert settings.turn_instance is True
    assert settings.min_tasks == 3
    assert settings.stickiness is True


ORIGIN = "https://a.example.com"


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({}, "cors_origins' is required"),
        ({"cors_origins": "*"}, "no '\\*'"),
        ({"cors_origins": "https://a.example.com/app"}, "no path"),
        ({"cors_origins": ORIGIN, "turn": "maybe"}, "true or false"),
        ({"cors_origins": ORIGIN, "stickiness": "sometimes"}, "'stickiness' must be true or false"),
        ({"cors_origins": ORIGIN, "turn_server": "turn:x"}, "host or host:port"),
        ({"cors_origins": ORIGIN, "turn_tls_port": "0"}, "between 1 and 65535"),
        ({"cors_origins": ORIGIN, "min_tasks": "4", "max_tasks": "2"}, "max_tasks"),
        ({"cors_origins": ORIGIN, "task_cpu": "lots"}, "whole number"),
    ],
)
def test_bad_context_is_refused(context: dict[str, Any], message: str) -> None:
    with pytest.raises(ContextError, match=message):
        _settings(**context)
