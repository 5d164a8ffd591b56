"""Markdown table cells and rows, as the benchmarks write them into benchmarks/README.md."""

from __future__ import annotations

from typing import Any


def fmt(value: Any) -> str:
    """A cell: "-" for nothing, whole numbers from 100 up, one decimal below."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}"
    return str(value)


def row(*cells: Any) -> str:
    return "| " + " | ".join(fmt(c) for c in cells) + " |"
