"""The one place that builds clients for the OpenAI API (or an OpenAI-compatible server)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx2
import openai
from openai import AsyncOpenAI, OpenAI

from interview.config import Settings

# What ends one attempt of a call to a model, not the work it serves (a turn, an evaluation).
# Besides the client's own errors: a transport error of its HTTP client (httpx2, which openai
# 3.57 uses) that comes through unwrapped mid-stream, and what a merely "compatible" server or
# a proxy sends instead of the expected answer: a body that is not JSON (JSONDecodeError, a
# ValueError), JSON of another shape (pydantic's errors, also ValueErrors; TypeError, KeyError,
# AttributeError on access).
ATTEMPT_FAILURES = (
    openai.OpenAIError,
    httpx2.HTTPError,
    TimeoutError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
)


def async_client(settings: Settings, timeout: float, max_retries: int = 0) -> AsyncOpenAI:
    # Retries are ours (bounded by a latency budget), so the SDK's own are off by default.
    return AsyncOpenAI(
        api_key=settings.openai_key,
        base_url=settings.openai_base_url,
        timeout=timeout,
        max_retries=max_retries,
    )


def sync_client(settings: Settings, timeout: float, max_retries: int = 0) -> OpenAI:
    """For the speech engines, whose Protocol is blocking and runs in worker threads."""
    return OpenAI(
        api_key=settings.openai_key,
        base_url=settings.openai_base_url,
        timeout=timeout,
        max_retries=max_retries,
    )


def describe_failure(exc: BaseException) -> str:
    """Why a call failed, for logs and status: never the server's message, which may echo the
    request, and never a header."""
    if isinstance(exc, openai.APIStatusError):
        return f"{type(exc).__name__} (HTTP {exc.status_code})"
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return "timed out"
    if isinstance(exc, openai.APIConnectionError):
        return "could not connect to the model server"
    return type(exc).__name__


def retry_after(exc: BaseException) -> float | None:
    """The seconds an HTTP error's Retry-After (or OpenAI's retry-after-ms) asks to wait, at
    least 0; None when it asks nothing readable."""
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    seconds: float | None = None
    try:
        if "retry-after-ms" in headers:
            seconds = float(headers["retry-after-ms"]) / 1000
        elif "retry-after" in headers:
            value = headers["retry-after"]
            try:
                seconds = float(value)
            except ValueError:  # an HTTP date
                seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
    except (ValueError, TypeError):
        return None
    if seconds is None or math.isnan(seconds):
        return None
    return max(0.0, seconds)
