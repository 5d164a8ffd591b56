"""Time-limited TURN credentials (the TURN REST API scheme coturn's `use-auth-secret` checks).

The browser gets a username "<unix expiry>:<session id>" and its HMAC; the shared secret stays
on the server. coturn recomputes the HMAC and refuses the username once its expiry has passed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

DEFAULT_TURN_PORT = 3478


@dataclass(frozen=True)
class IceServer:
    """One entry of the browser's RTCConfiguration.iceServers."""

    urls: list[str]
    username: str
    credential: str


@dataclass(frozen=True)
class IceServers:
    servers: list[IceServer]
    ttl: int


def turn_password(secret: str, username: str) -> str:
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def turn_urls(server: str, tls_port: int | None) -> list[str]:
    """udp and tcp urls for TURN_SERVER ("host" or "host:port"), and turns: with TLS."""
    parts = urlsplit(f"//{server.strip()}")
    host = parts.hostname
    if not host:
        raise ValueError(f"TURN_SERVER has no host: {server!r}")
    if ":" in host:  # an IPv6 literal goes back in brackets
        host = f"[{host}]"
    port = parts.port or DEFAULT_TURN_PORT
    urls = [f"turn:{host}:{port}?transport=udp", f"turn:{host}:{port}?transport=tcp"]
    if tls_port:
        urls.append(f"turns:{host}:{tls_port}?transport=tcp")
    return urls


class TurnCredentialIssuer:
    def __init__(
        self, server: str | None, secret: str | None, tls_port: int | None, ttl_seconds: int
    ) -> None:
        self._urls = turn_urls(server, tls_port) if server else []
        self._secret = secret
        self.ttl_seconds = ttl_seconds

    @property
    def configured(self) -> bool:
        return bool(self._urls and self._secret)

    def issue(self, user: str, now: datetime, not_after: datetime) -> IceServers:
        """Credentials for `user` valid for the TTL, but never past `not_after`."""
        if not self.configured or self._secret is None:
            return IceServers(servers=[], ttl=0)
        remaining = math.floor((not_after - now).total_seconds())
        ttl = max(0, min(self.ttl_seconds, remaining))
        username = f"{math.floor(now.timestamp()) + ttl}:{user}"
        server = IceServer(
            urls=list(self._urls),
            username=username,
            credential=turn_password(self._secret, username),
        )
        return IceServers(servers=[server], ttl=ttl)
