"""The results report of an ended interview."""

from interview.report.metrics import build_report
from interview.report.models import Report

__all__ = ["Report", "build_report"]
