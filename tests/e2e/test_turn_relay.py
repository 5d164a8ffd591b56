"""The service's TURN credentials against a real coturn started with use-auth-secret."""

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.app_server import AppServer
from harness.coturn import CoturnServer
from interview.turn_credentials import turn_password
from tests.api.helpers import auth
from tests.e2e.conftest import COTURN_SECRET

SECRET = COTURN_SECRET


@pytest.fixture(scope="module")
def app_with_turn(coturn: CoturnServer, tmp_path_factory) -> Iterator[AppServer]:
    directory: Path = tmp_path_factory.mktemp("turn-app")
    server = AppServer(
        directory / "server.log",
        {
            "DATABASE_URL": f"sqlite:///{directory}/spool.db",
            "TURN_SERVER": f"127.0.0.1:{coturn.port}",
            "TURN_SECRET": SECRET,
            "TURN_TLS_PORT": "5349",
        },
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ice(app_with_turn: AppServer) -> dict:
    with httpx.Client(base_url=app_with_turn.api, timeout=10) as api:
        session = api.post("/start", json={"user_id": "turn-test"}).json()
        response = api.get(f"/{session['session_id']}/ice-servers", headers=auth(session["token"]))
    assert response.status_code == 200
    return {"session": session, **response.json()}


def test_ice_servers_have_the_browser_shape(ice: dict, coturn: CoturnServer):
    [server] = ice["iceServers"]
    assert server["urls"] == [
        f"turn:127.0.0.1:{coturn.port}?transport=udp",
        f"turn:127.0.0.1:{coturn.port}?transport=tcp",
        "turns:127.0.0.1:5349?transport=tcp",
    ]
    expiry, session_id = server["username"].split(":", 1)
    assert session_id == ice["session"]["session_id"]
    assert ice["ttl"] == 600
    assert abs(int(expiry) - (time.time() + 600)) < 30


def test_coturn_relays_with_the_issued_credentials(ice: dict, coturn: CoturnServer):
    [server] = ice["iceServers"]
    result = coturn.allocate(server["username"], server["credential"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Total lost packets 0" in result.stdout


def test_coturn_refuses_a_wrong_secret(ice: dict, coturn: CoturnServer):
    username = ice["iceServers"][0]["username"]
    result = coturn.allocate(username, turn_password("not-the-secret", username))
    assert result.returncode != 0
    assert "Cannot complete Allocation" in result.stdout


def test_coturn_refuses_an_expired_username(ice: dict, coturn: CoturnServer):
    session_id = ice["session"]["session_id"]
    username = f"{int(time.time()) - 10}:{session_id}"
    result = coturn.allocate(username, turn_password(SECRET, username))
    assert result.returncode != 0
    assert "Cannot complete Allocation" in result.stdout


def test_the_secret_never_leaves_the_server(ice: dict, app_with_turn: AppServer):
    health = httpx.get(f"{app_with_turn.api}/health").json()
    assert health["checks"]["turn"] == {"ok": True, "detail": "configured"}
    assert SECRET not in str(ice) and SECRET not in str(health)
    assert SECRET not in app_with_turn.log()
