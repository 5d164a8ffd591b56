"""The one place that builds clients for the OpenAI API (or an OpenAI-compatible server)."""

from __future__ import annotations

import openai
from openai import AsyncOpenAI, OpenAI

from interview.config import Settings


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
