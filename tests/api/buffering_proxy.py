"""A reverse proxy that forwards each response only once it has ended, as API Gateway's HTTP APIs
(v2) do: they have no streaming mode, so a Server-Sent Events response reaches the browser whole,
when the server ends it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from harness.http_proxy import http_proxy


@asynccontextmanager
async def buffering_proxy(upstream: str) -> AsyncIterator[str]:
    """Serve on a free loopback port, forwarding to `upstream`; yields the proxy's base URL."""
    async with http_proxy(upstream) as base_url:
        yield base_url
