"""The one place that builds clients for the OpenAI API (or an OpenAI-compatible server)."""

from __future__ import annotations

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
