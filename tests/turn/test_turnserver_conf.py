"""The shipped turn/turnserver.conf, run by a real coturn the way docker-compose.turn.yml runs it.

The compose service's entrypoint (turn/coturn-entrypoint.sh) runs first, as compose would start
it: its mounts and the compose secret moved to a temporary directory, and a stand-in
`turnserver` that records what it was started with. The real coturn then runs the config file
the entrypoint rendered (shipped file plus the secret) with the entrypoint's arguments.

Only the settings in harness/coturn.py's TEST_OVERRIDES change for the test (loopback
addresses, free ports, a throwaway certificate, loopback peers): authentication, the denied peer
ranges, quotas, bandwidth limits and TLS are the shipped ones. The client is aioice's TURN
client, which signs every request with the long-term credential (MESSAGE-INTEGRITY) as a
browser does.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from aioice import stun
from aioice.turn import TCP_TRANSPORT, TurnClientTcpProtocol, TurnClientUdpProtocol

from harness.compose import interpolate
from harness.coturn import TEST_OVERRIDES, CoturnServer, config_key
from harness.coturn_container import IMAGE as COTURN_IMAGE
from harness.coturn_container import CoturnContainer, build_image
from harness.docker import Engine, remove_older_images, remove_test_leftovers
from interview.turn_credentials import TurnCredentialIssuer, turn_password

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "turn" / "turnserver.conf"
COMPOSE = ROOT / "turn" / "docker-compose.turn.yml"
ENTRYPOINT = ROOT / "turn" / "coturn-entrypoint.sh"
SECRET = "shipped-conf-test-secret-4b1d"
REALM = "turn.spool.test"
# What `docker compose up` interpolates into the file: the secret is not among it.
TEST_ENV = {"TURN_REALM": REALM, "TURN_EXTERNAL_IP": "127.0.0.1"}
SESSION = "sess-turn-conf-test"

TurnProtocol = TurnClientUdpProtocol | TurnClientTcpProtocol
# Browsers' relay and host candidates on the internet: these must stay reachable (a deny entry
# written wrong, e.g. an IPv6 range that covers IPv4-mapped addresses, refuses them all).
PUBLIC_PEERS = ("8.8.8.8", "1.1.1.1", "52.94.236.248")


def compose_service() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]["coturn"]


def compose_args() -> list[str]:
    """The compose command (the entrypoint's arguments), with the test's environment."""
    return [interpolate(part, TEST_ENV) for part in compose_service()["command"]]


def mounted(container_path: str) -> Path:
    """The repository file compose mounts at `container_path` (a bind mount of the service)."""
    for volume in compose_service()["volumes"]:
        source, target, *_ = volume.split(":")
        if target == container_path and source.startswith("./"):
            return COMPOSE.parent / source
    raise AssertionError(f"nothing of the repository is mounted at {container_path}")


def script_default(variable: str) -> str:
    """The container path the entrypoint uses unless `variable` moves it."""
    match = re.search(rf"\$\{{{variable}:-([^}}]+)\}}", ENTRYPOINT.read_text())
    assert match, variable
    return match.group(1)


@dataclass
class EntrypointRun:
    returncode: int
    stderr: str
    argv: list[str] | None  # what the stand-in turnserver was started with; None: not started
    environ: str
    run_dir: Path


STAND_IN = """#!/bin/sh
printf '%s\\n' "$@" > "$STAND_IN_DIR/argv"
env > "$STAND_IN_DIR/environ"
"""


def run_entrypoint(directory: Path, secret: str | None, config: Path = CONF) -> EntrypointRun:
    """The compose service's entrypoint and command, as compose starts them: the config mounted
    read-only, the compose secret as a file, an empty private tmpfs, `turnserver` on PATH (a
    stand-in recording its arguments and environment)."""
    directory.mkdir(parents=True, exist_ok=True)
    bin_dir, run_dir = directory / "bin", directory / "run"
    bin_dir.mkdir()
    run_dir.mkdir(mode=0o700)
    (bin_dir / "turnserver").write_text(STAND_IN)
    (bin_dir / "turnserver").chmod(0o755)
    secret_file = directory / "turn_secret"
    if secret is not None:
        secret_file.write_text(secret)
    service = compose_service()
    shell, script = service["entrypoint"]
    command = [shell, str(mounted(script)), *compose_args()]
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STAND_IN_DIR": str(directory),
        "COTURN_CONFIG": str(config),
        "COTURN_SECRET_FILE": str(secret_file),
        "COTURN_RUN_DIR": str(run_dir),
    }
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    argv_file = directory / "argv"
    argv = argv_file.read_text().splitlines() if argv_file.exists() else None
    environ = (directory / "environ").read_text() if argv is not None else ""
    return EntrypointRun(result.returncode, result.stderr, argv, environ, run_dir)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> EntrypointRun:
    run = run_entrypoint(tmp_path_factory.mktemp("compose"), SECRET + "\n")
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="module")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = Engine.ensure(tmp_path_factory.mktemp("dockerd"))
    remove_test_leftovers()
    yield engine
    remove_test_leftovers()
    # Earlier builds of the tag, untagged by this one.
    remove_older_images(COTURN_IMAGE, keep=COTURN_IMAGE, title="spool-interview-coturn")
    engine.close()


@pytest.fixture(scope="module", params=["process", "container"])
def coturn(request: pytest.FixtureRequest, rendered: EntrypointRun) -> Iterator[CoturnServer]:
    server: CoturnServer
    if request.param == "process":
        # The real coturn on the file the entrypoint wrote, with the arguments it passed on.
        assert rendered.argv is not None and rendered.argv[0] == "-c"
        server = CoturnServer(
            SECRET, realm=REALM, config_file=Path(rendered.argv[1]), args=rendered.argv[2:]
        )
    else:
        # The compose service itself in Docker: the image of Debian's coturn, the compose
        # file's entrypoint, mounts, tmpfs and secret (harness/coturn_container.py).
        request.getfixturevalue("docker_engine")
        env = {**TEST_ENV, "TURN_IMAGE": build_image()}
        server = CoturnContainer(SECRET, realm=REALM, config_file=CONF, env=env)
    server.start()
    yield server
    server.stop()


def shipped_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in CONF.read_text().splitlines():
        key = config_key(line)
        if key:
            value = line.split("=", 1)[1].strip() if "=" in line else ""
            settings.setdefault(key, []).append(value)
    return settings


def credentials(now: datetime | None = None, ttl: int = 600) -> tuple[str, str]:
    """What the service hands a browser for a session (interview/turn_credentials.py)."""
    now = now or datetime.now(UTC)
    issuer = TurnCredentialIssuer("127.0.0.1:3478", SECRET, 5349, ttl)
    [server] = issuer.issue(SESSION, now=now, not_after=now + timedelta(hours=1)).servers
    return server.username, server.credential


async def allocate(
    coturn: CoturnServer,
    username: str,
    password: str,
    transport: str = "udp",
    tls: ssl.SSLContext | None = None,
) -> TurnProtocol:
    loop = asyncio.get_running_loop()
    protocol: TurnProtocol
    if transport == "udp":
        address = ("127.0.0.1", coturn.port)
        _, protocol = await loop.create_datagram_endpoint(
            lambda: TurnClientUdpProtocol(address, username, password, 600, 300),
            remote_addr=address,
        )
    else:
        address = ("127.0.0.1", coturn.tls_port if tls else coturn.port)
        _, protocol = await loop.create_connection(
            lambda: TurnClientTcpProtocol(address, username, password, 600, 300),
            *address,
            ssl=tls,
        )
    try:
        await asyncio.wait_for(protocol.connect(), timeout=10)
    except BaseException:
        await close(protocol)
        raise
    return protocol


async def close(protocol: TurnProtocol) -> None:
    if protocol.relayed_address is not None:
        await protocol.delete()  # also closes the transport
    elif protocol.transport is not None:
        protocol.transport.close()


async def create_permission(protocol: TurnProtocol, peer: tuple[str, int]) -> None:
    request = stun.Message(
        message_method=stun.Method.CREATE_PERMISSION, message_class=stun.Class.REQUEST
    )
    request.attributes["XOR-PEER-ADDRESS"] = peer
    await asyncio.wait_for(protocol.request_with_retry(request), timeout=10)


def test_the_test_changes_only_the_allowed_settings(coturn: CoturnServer):
    shipped = [line for line in CONF.read_text().splitlines() if config_key(line)]
    running = coturn.config().splitlines()
    changed = {config_key(line) for line in shipped if line not in running}
    assert changed <= TEST_OVERRIDES
    # And what matters most is not among them.
    for key in ("use-auth-secret", "denied-peer-ip", "no-multicast-peers", "user-quota", "realm"):
        assert key not in TEST_OVERRIDES


async def test_credentials_from_the_app_allocate_a_relay_on_udp_and_tcp(coturn: CoturnServer):
    username, password = credentials()
    for transport in ("udp", "tcp"):
        protocol = await allocate(coturn, username, password, transport)
        try:
            assert protocol.relayed_address is not None
            host, port = protocol.relayed_address
            assert host == "127.0.0.1" and 40000 <= port < 60000
            # The realm of the compose command line is the one clients authenticate against.
            assert protocol.realm == REALM
        finally:
            await close(protocol)


async def test_turns_over_tls_allocates_with_the_shipped_tls_settings(coturn: CoturnServer):
    context = ssl.create_default_context(cafile=str(coturn.dir / "cert.pem"))
    protocol = await allocate(coturn, *credentials(), transport="tcp", tls=context)
    try:
        assert protocol.relayed_address is not None
        tls = protocol.transport.get_extra_info("ssl_object")
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        await close(protocol)


async def test_the_relay_carries_data_to_an_allowed_peer(coturn: CoturnServer):
    loop = asyncio.get_running_loop()
    received: asyncio.Future[tuple[bytes, tuple[str, int]]] = loop.create_future()

    class Peer(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if not received.done():
                received.set_result((data, addr))

    peer_transport, _ = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    protocol = await allocate(coturn, *credentials())
    try:
        peer = peer_transport.get_extra_info("sockname")
        await protocol.send_data(b"interview audio", peer)
        data, source = await asyncio.wait_for(received, timeout=10)
        assert data == b"interview audio"
        assert source == protocol.relayed_address  # it came out of the relay
    finally:
        await close(protocol)
        peer_transport.close()


async def test_a_wrong_secret_is_refused(coturn: CoturnServer):
    username, _ = credentials()
    with pytest.raises(stun.TransactionFailed) as refused:
        await allocate(coturn, username, turn_password("not-the-secret", username))
    assert refused.value.response.error_code == 401


async def test_an_expired_username_is_refused(coturn: CoturnServer):
    # Issued 20 minutes ago with a 10-minute lifetime: correctly signed, but expired.
    username, password = credentials(now=datetime.now(UTC) - timedelta(minutes=20))
    assert int(username.split(":")[0]) < time.time()
    with pytest.raises(stun.TransactionFailed) as refused:
        await allocate(coturn, username, password)
    assert refused.value.response.error_code == 401


@pytest.mark.parametrize(
    "peer",
    [
        "10.0.0.1",  # a private network (the VPC)
        "169.254.169.254",  # the cloud metadata service
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.1",
        "224.0.0.1",  # multicast
    ],
)
async def test_a_relay_toward_an_internal_address_is_refused(coturn: CoturnServer, peer: str):
    protocol = await allocate(coturn, *credentials())
    try:
        # The controls: the same allocation may reach public addresses (a permission sends no
        # packet) and the test's one allowed loopback peer...
        for allowed in PUBLIC_PEERS:
            await create_permission(protocol, (allowed, 3478))
        await create_permission(protocol, ("127.0.0.1", 9))
        # ...but never an internal address, neither by permission nor by channel.
        with pytest.raises(stun.TransactionFailed) as refused:
            await create_permission(protocol, (peer, 80))
        assert refused.value.response.error_code == 403
        with pytest.raises(stun.TransactionFailed) as bound:
            await asyncio.wait_for(protocol.send_data(b"probe", (peer, 80)), timeout=10)
        assert bound.value.response.error_code == 403
    finally:
        await close(protocol)


def test_loopback_stays_denied_without_the_test_allowance():
    # The shipped file never allows loopback peers, and denies 127/8 and ::1 outright.
    keys = [config_key(line) for line in CONF.read_text().splitlines()]
    assert "allow-loopback-peers" not in keys and "allowed-peer-ip" not in keys
    denied = [
        line.split("=", 1)[1]
        for line in CONF.read_text().splitlines()
        if config_key(line) == "denied-peer-ip"
    ]
    for entry in ("127.0.0.0-127.255.255.255", "::1", "10.0.0.0-10.255.255.255"):
        assert entry in denied


def test_the_shipped_settings_harden_the_server():
    settings = shipped_settings()
    for flag in (
        "use-auth-secret",
        "fingerprint",
        "no-multicast-peers",
        "no-tcp-relay",
        "no-cli",
        "no-tlsv1",
        "no-tlsv1_1",
    ):
        assert settings.get(flag) == [""], flag
    assert settings["listening-port"] == ["3478"]
    assert settings["tls-listening-port"] == ["5349"]
    assert (settings["min-port"], settings["max-port"]) == (["49152"], ["65535"])
    assert settings["cert"][0].endswith(".pem") and settings["pkey"][0].endswith(".pem")
    assert int(settings["user-quota"][0]) > 0 and int(settings["total-quota"][0]) > 0
    assert int(settings["stale-nonce"][0]) > 0
    assert settings["realm"][0]
    # Bandwidth, in bytes per second: room for Opus speech (64 kbit/s = 8000 B/s, twice over for
    # bursts and overhead), not for bulk transfer (at most 500 kbit/s per allocation); the server
    # total leaves room for about 100 interviews (2-3 allocations each).
    max_bps, capacity = int(settings["max-bps"][0]), int(settings["bps-capacity"][0])
    assert 16_000 <= max_bps <= 62_500
    assert capacity // max_bps >= 300
    denied = settings["denied-peer-ip"]
    for entry in (
        "0.0.0.0-0.255.255.255",
        "10.0.0.0-10.255.255.255",
        "100.64.0.0-100.127.255.255",
        "127.0.0.0-127.255.255.255",
        "169.254.0.0-169.254.255.255",
        "172.16.0.0-172.31.255.255",
        "192.168.0.0-192.168.255.255",
        "::1",
        "fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ):
        assert entry in denied, entry
    # The secret is never in the file: it comes from the environment at `compose up`.
    assert "static-auth-secret" not in settings


def test_compose_runs_the_config_read_only_with_the_secret_as_a_compose_secret():
    service = compose_service()
    assert interpolate(service["image"], TEST_ENV).startswith("coturn/coturn:")  # by default
    assert service["network_mode"] == "host"
    assert service["restart"] == "unless-stopped"
    assert "./turnserver.conf:/etc/coturn/turnserver.conf:ro" in service["volumes"]
    assert all(volume.endswith(":ro") for volume in service["volumes"])
    # The secret is a compose secret made from TURN_SECRET: a file in the container, neither an
    # environment variable of the container nor an argument, and never interpolated into the
    # file (where `docker compose config` would print it).
    assert yaml.safe_load(COMPOSE.read_text())["secrets"] == {
        "turn_secret": {"environment": "TURN_SECRET"}
    }
    assert service["secrets"] == ["turn_secret"]
    assert "environment" not in service
    assert "TURN_SECRET" not in " ".join(service["command"])
    assert "${TURN_SECRET" not in COMPOSE.read_text()
    assert not any("secret" in part for part in service["command"])
    assert SECRET not in COMPOSE.read_text()
    # The entrypoint is the repository's script, and the paths it uses are the service's: the
    # mounted config, the secret's file (/run/secrets/<name>) and a private tmpfs.
    assert service["entrypoint"][0] == "/bin/sh"
    assert mounted(service["entrypoint"][1]) == ENTRYPOINT
    assert mounted(script_default("COTURN_CONFIG")) == CONF
    assert script_default("COTURN_SECRET_FILE") == "/run/secrets/turn_secret"
    run_dir = script_default("COTURN_RUN_DIR")
    [tmpfs] = service["tmpfs"]
    path, options = tmpfs.split(":")
    assert path == run_dir
    assert "mode=0700" in options.split(",")
    assert "uid=65534" in options.split(",")  # the image's user, nobody


def test_the_entrypoint_renders_the_secret_into_a_private_config(rendered: EntrypointRun):
    assert rendered.argv is not None
    config = Path(rendered.argv[1])
    assert rendered.argv[0] == "-c" and config.parent == rendered.run_dir
    # Only the owner may read it, on the tmpfs.
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    text = config.read_text()
    # The shipped file unchanged, then the secret (without the secret file's newline).
    assert text.startswith(CONF.read_text())
    assert text.splitlines()[-1] == f"static-auth-secret={SECRET}"
    # The secret is in no argument and no environment variable of coturn.
    assert rendered.argv[2:] == [f"--realm={REALM}", "--external-ip=127.0.0.1"]
    assert SECRET not in " ".join(rendered.argv)
    assert SECRET not in rendered.environ
    # Without a compose secret, compose fails on the remaining variables before starting.
    with pytest.raises(KeyError, match="TURN_REALM"):
        [interpolate(part, {}) for part in compose_service()["command"]]


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "cannot read the secret"),
        ("", "is empty"),
        ("\n", "is empty"),
        ("one\ntwo", "must be one line"),
        # What coturn's parser would trim or read otherwise: the logins would all fail.
        ("abc def", "may use only"),
        ("abc ", "may use only"),
        ("abc\r", "may use only"),
        ('"quoted"', "may use only"),
        ("abc#def", "may use only"),
    ],
)
def test_the_entrypoint_refuses_to_start_without_a_usable_secret(
    tmp_path: Path, secret: str | None, message: str
):
    run = run_entrypoint(tmp_path, secret)
    assert run.returncode != 0
    assert message in run.stderr
    assert run.argv is None  # coturn was never started (it would run without a secret)
    assert not list(run.run_dir.iterdir())


def test_the_entrypoint_refuses_a_config_that_carries_a_secret(tmp_path: Path):
    config = tmp_path / "turnserver.conf"
    config.write_text(CONF.read_text() + "static-auth-secret=committed-by-mistake\n")
    run = run_entrypoint(tmp_path / "run", SECRET, config=config)
    assert run.returncode != 0 and "must not set static-auth-secret" in run.stderr
    assert run.argv is None


async def test_a_tcp_relay_is_refused(coturn: CoturnServer):
    """RFC 6062: an allocation relaying over TCP would let anyone with credentials (any visitor
    of the service) open TCP connections from this host to any public host and port."""
    username, password = credentials()
    loop = asyncio.get_running_loop()
    address = ("127.0.0.1", coturn.port)
    _, protocol = await loop.create_connection(
        lambda: TurnClientTcpProtocol(address, username, password, 600, 300), *address
    )
    try:
        request = stun.Message(
            message_method=stun.Method.ALLOCATE, message_class=stun.Class.REQUEST
        )
        request.attributes["LIFETIME"] = 600
        request.attributes["REQUESTED-TRANSPORT"] = TCP_TRANSPORT
        with pytest.raises(stun.TransactionFailed) as refused:
            await asyncio.wait_for(protocol.request_with_retry(request), timeout=10)
        # 442 Unsupported Transport Protocol, after authenticating (not a 401).
        assert refused.value.response.error_code == 442
        # The same client, over the same TCP connection, still gets the UDP relay WebRTC uses.
        relayed = await asyncio.wait_for(protocol.connect(), timeout=10)
        assert relayed[0] == "127.0.0.1"
    finally:
        await close(protocol)


async def test_a_relay_carries_speech_but_not_a_flood(coturn: CoturnServer):
    max_bps = int(shipped_settings().get("max-bps", ["0"])[0])  # coturn: 0 is unlimited
    loop = asyncio.get_running_loop()
    received: dict[bytes, int] = {b"s": 0, b"f": 0}

    class Peer(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            received[data[:1]] = received.get(data[:1], 0) + len(data)

    peer_transport, _ = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    peer = peer_transport.get_extra_info("sockname")
    protocol = await allocate(coturn, *credentials())
    try:
        await protocol.send_data(b"bind", peer)  # binds the channel, outside the counts
        # Speech: an Opus packet every 20 ms for a second (200 bytes: 80 kbit/s), all relayed.
        for _ in range(50):
            await protocol.send_data(b"s" * 200, peer)
            await asyncio.sleep(0.02)
        # A flood: 300 kB as fast as the client can send.
        flood = 300 * 1000
        started = time.monotonic()
        for _ in range(300):
            await protocol.send_data(b"f" * 1000, peer)
        seconds = time.monotonic() - started
        await asyncio.sleep(1.5)
        assert received[b"s"] == 50 * 200
        # coturn passes max-bps per second and drops the rest.
        allowed = max_bps * (math.ceil(seconds) + 1)
        assert allowed < flood, f"sending took {seconds:.1f} s: too slow to tell"
        assert 0 < received[b"f"] <= allowed, (received, seconds)
    finally:
        await close(protocol)
        peer_transport.close()


@pytest.mark.parametrize("coturn", ["container"], indirect=True)
def test_the_container_keeps_the_secret_out_of_arguments_environment_and_logs(
    coturn: CoturnServer,
):
    assert isinstance(coturn, CoturnContainer)
    processes = coturn.processes()
    # coturn itself (the entrypoint exec'd it), as the image's user, on the rendered config.
    assert len(processes) == 1, processes
    [(_pid, uid, args)] = processes
    assert uid == 65534
    assert args == ["turnserver", "-c", "/run/coturn/turnserver.conf", *compose_args()]
    for template in ("{{json .Config}}", "{{json .HostConfig}}", "{{json .Mounts}}"):
        assert SECRET not in coturn.inspect(template)
    assert SECRET not in coturn.log()
    # The rendered config, with the secret, is on the private tmpfs and the user's alone.
    rendered = coturn.exec("stat", "-c", "%a %u", "/run/coturn/turnserver.conf")
    assert rendered.stdout.split() == ["600", "65534"], rendered
    mounted = coturn.exec("stat", "-f", "-c", "%T", "/run/coturn")
    assert mounted.stdout.strip() == "tmpfs", mounted
