import base64
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from interview.turn_credentials import TurnCredentialIssuer, turn_password, turn_urls

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def openssl_hmac_sha1_b64(secret: str, message: str) -> str:
    """The same credential computed by a different implementation (OpenSSL's CLI)."""
    digest = subprocess.run(
        ["openssl", "dgst", "-sha1", "-hmac", secret, "-binary"],
        input=message.encode(),
        capture_output=True,
        check=True,
    ).stdout
    return base64.b64encode(digest).decode()


def test_known_vector():
    # Computed with:
    # printf %s '1700000000:session-1' | openssl dgst -sha1 -hmac north-wind -binary | base64
    assert turn_password("north-wind", "1700000000:session-1") == "3uwMU9/bQab030NBxsnIbQR2cdo="


@pytest.mark.parametrize(
    ("secret", "username"),
    [("s3cr3t", "1764331200:abc"), ("a longer secret with spaces", "1:x"), ("ü-secret", "9:ü")],
)
def test_password_matches_openssl(secret: str, username: str):
    assert turn_password(secret, username) == openssl_hmac_sha1_b64(secret, username)


def test_issue_shapes_username_and_ttl():
    issuer = TurnCredentialIssuer("turn.example.com", "secret", None, ttl_seconds=600)
    servers = issuer.issue("sess-1", now=NOW, not_after=NOW + timedelta(hours=1))
    assert servers.ttl == 600
    [server] = servers.servers
    expiry = int(NOW.timestamp()) + 600
    assert server.username == f"{expiry}:sess-1"
    assert server.credential == openssl_hmac_sha1_b64("secret", server.username)
    assert server.urls == [
        "turn:turn.example.com:3478?transport=udp",
        "turn:turn.example.com:3478?transport=tcp",
    ]


def test_ttl_never_outlives_the_session():
    issuer = TurnCredentialIssuer("turn.example.com", "secret", None, ttl_seconds=600)
    servers = issuer.issue("s", now=NOW, not_after=NOW + timedelta(seconds=90))
    assert servers.ttl == 90
    assert servers.servers[0].username.startswith(f"{int(NOW.timestamp()) + 90}:")
    past = issuer.issue("s", now=NOW, not_after=NOW - timedelta(seconds=5))
    assert past.ttl == 0


def test_tls_port_adds_turns_url_and_port_is_kept():
    assert turn_urls("turn.example.com:3479", 5349) == [
        "turn:turn.example.com:3479?transport=udp",
        "turn:turn.example.com:3479?transport=tcp",
        "turns:turn.example.com:5349?transport=tcp",
    ]


def test_ipv6_literal_is_bracketed():
    assert turn_urls("[2001:db8::1]:3478", None)[0] == "turn:[2001:db8::1]:3478?transport=udp"


def test_not_configured_gives_empty_list():
    issuer = TurnCredentialIssuer(None, None, None, ttl_seconds=600)
    assert not issuer.configured
    servers = issuer.issue("s", now=NOW, not_after=NOW + timedelta(hours=1))
    assert servers.servers == [] and servers.ttl == 0


def test_server_without_host_is_refused():
    with pytest.raises(ValueError, match="no host"):
        turn_urls(":3478", None)
