"""What a deployment relies on while its database is unreachable (an RDS failover takes 60-120 s):
the load balancer's shallow health check keeps the task in service, and a browser on another
origin can read the 503 and its Retry-After with credentials."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.app_server import AppServer
from harness.ports import free_port

ORIGIN = "https://hiring.example"


@pytest.fixture(scope="module")
def no_database(tmp_path_factory) -> Iterator[AppServer]:
    """A production server whose PostgreSQL does not answer (nothing listens on its port)."""
    directory: Path = tmp_path_factory.mktemp("no-database")
    server = AppServer(
        directory / "server.log",
        {
            "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/nothing",
            "ENVIRONMENT": "production",
            "CORS_ORIGINS": ORIGIN,
        },
    )
    server.start(expect_healthy=False)
    yield server
    server.stop()


def test_liveness_needs_no_database(no_database: AppServer):
    deep = httpx.get(f"{no_database.api}/health", timeout=10)
    assert deep.status_code == 503
    assert deep.json()["checks"]["database"]["ok"] is False

    live = httpx.get(f"{no_database.api}/health/live", timeout=10)
    assert live.status_code == 200
    assert live.json() == {"status": "ok", "detail": "accepting interviews"}
    assert httpx.head(f"{no_database.api}/health/live", timeout=10).status_code == 200


def test_liveness_is_in_the_contract(no_database: AppServer):
    spec = httpx.get(f"{no_database.base_url}/openapi.json", timeout=10).json()
    operation = spec["paths"]["/api/interview/health/live"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/LivenessResponse"}
    assert set(spec["components"]["schemas"]["LivenessResponse"]["properties"]) == {
        "status",
        "detail",
    }


def test_a_browser_on_the_configured_origin_calls_with_credentials(no_database: AppServer):
    preflight = httpx.options(
        f"{no_database.api}/start",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=10,
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert preflight.headers["access-control-allow-credentials"] == "true"

    # fetch(..., {credentials: "include"}) with the load balancer's stickiness cookie.
    started = httpx.post(
        f"{no_database.api}/start",
        json={"user_id": "u"},
        headers={"Origin": ORIGIN, "Cookie": "AWSALBCORS=sticky"},
        timeout=10,
    )
    assert started.status_code == 503  # the database is unreachable: retry later
    assert started.headers["retry-after"] == "5"
    assert started.headers["access-control-allow-origin"] == ORIGIN
    assert started.headers["access-control-allow-credentials"] == "true"
    exposed = started.headers["access-control-expose-headers"].lower().split(",")
    assert "retry-after" in [header.strip() for header in exposed]


def test_other_origins_get_no_cors_headers(no_database: AppServer):
    response = httpx.options(
        f"{no_database.api}/start",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert "access-control-allow-origin" not in response.headers
