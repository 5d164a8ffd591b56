"""The results report as a document a recruiter reads or prints: Markdown or HTML.

The HTML is self-contained (inline styles, system fonts, no scripts or external assets) and
escapes everything from the interview, so a candidate's words cannot inject markup.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from interview.report.models import Report, TranscriptQuality

Format = Literal["md", "html"]

_RECOMMENDATIONS = {
    "strong_yes": "Strong yes: advance",
    "yes": "Yes: advance",
    "no": "No: do not advance",
    "strong_no": "Strong no: do not advance",
}
_REASONS = {
    "candidate": "the candidate",
    "plan_finished": "the interviewer (plan finished)",
    "timeout": "time-out",
}


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "not started"


def _minutes(seconds: float | None) -> str:
    return f"{seconds / 60:.1f} min" if seconds is not None else "duration unknown"


def _percent(value: float | None) -> str:
    return f"{value * 100:.0f}%" if value is not None else "n/a"


def _seconds(value: float | None) -> str:
    return f"{value:.1f} s" if value is not None else "n/a"


def _number(value: float | None) -> str:
    return f"{value:g}" if value is not None else "n/a"


def _clock(seconds: float) -> str:
    whole = max(0, int(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def _transcript(quality: TranscriptQuality) -> str:
    parts = []
    if quality.accurate:
        parts.append(f"{quality.accurate} spoken answers from the accurate pass")
    if quality.live_only:
        parts.append(f"{quality.live_only} from the live pass only (less exact)")
    if quality.typed:
        parts.append(f"{quality.typed} typed")
    return "; ".join(parts) or "no answers"


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|!~])")


def _text(text: str | None) -> str:
    """Words from the interview (or the model) as literal Markdown text: one line, and no
    emphasis, link, image, heading, table cell or raw HTML can come out of them."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join((text or "").split()))


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("interview.report", "templates"),
        # Escaped by file name: HTML always; Markdown is plain text read as such.
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )
    env.filters.update(
        when=_when,
        minutes=_minutes,
        percent=_percent,
        seconds=_seconds,
        number=_number,
        clock=_clock,
        transcript=_transcript,
        text=_text,
        recommendation=lambda v: _RECOMMENDATIONS.get(v, v),
        reason=lambda v: _REASONS.get(v, v or "unknown"),
    )
    return env


_ENVIRONMENT = _environment()


def render(report: Report, fmt: Format) -> str:
    template = _ENVIRONMENT.get_template(f"report.{fmt}.j2")
    return template.render(r=report, e=report.evaluation, m=report.metrics)
