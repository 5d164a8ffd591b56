"""A real coturn (Debian's package) on a free loopback port, with TURN REST auth.

By default it runs a minimal loopback config; given `config_file` (turn/turnserver.conf), it runs
that file with only the settings in TEST_OVERRIDES replaced, and `args` on the command line as
turn/docker-compose.turn.yml passes them.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from harness.ports import free_port

# What a test may change in a shipped config: where coturn listens and relays, its ports and
# certificate files (a throwaway self-signed pair), its state files, and loopback peers (client
# and peer are both on 127.0.0.1 here). Everything else runs exactly as shipped.
TEST_OVERRIDES = frozenset(
    {
        "listening-ip",
        "relay-ip",
        "listening-port",
        "tls-listening-port",
        "min-port",
        "max-port",
        "cert",
        "pkey",
        "no-tls",
        "no-dtls",
        "allow-loopback-peers",
        "allowed-peer-ip",
        "userdb",
        "pidfile",
    }
)


def config_key(line: str) -> str | None:
    """The option a turnserver.conf line sets (None for blanks and comments)."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    return text.split("=", 1)[0].strip().removeprefix("--")


class CoturnServer:
    def __init__(
        self,
        secret: str,
        realm: str = "spool.test",
        config_file: Path | None = None,
        args: Sequence[str] = (),
    ) -> None:
        if shutil.which("turnserver") is None:
            raise RuntimeError("coturn is not installed: run `make test` (it installs it)")
        self.secret = secret
        self.realm = realm
        self.port = free_port()
        self.tls_port = free_port()
        self.config_file = config_file
        self.args = list(args)
        self.dir = Path(tempfile.mkdtemp(prefix="spool-turn-"))
        self.process: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
        if self.config_file is not None:
            return self.shipped_config(self.config_file)
        relay_base = 40000 + (self.port % 2000) * 10
        return "\n".join(
            [
                "listening-ip=127.0.0.1",
                "relay-ip=127.0.0.1",
                f"listening-port={self.port}",
                f"min-port={relay_base}",
                f"max-port={relay_base + 9}",
                f"realm={self.realm}",
                "use-auth-secret",
                f"static-auth-secret={self.secret}",
                "fingerprint",
                "no-tls",
                "no-dtls",
                "no-cli",
                "no-multicast-peers",
                # Only because client and peer are both on loopback in this test.
                "allow-loopback-peers",
                f"userdb={self.dir / 'turndb'}",
                f"pidfile={self.dir / 'turnserver.pid'}",
                "log-file=stdout",
                "simple-log",
                "verbose",  # logs each allocation with its username, which tests look for
                "",
            ]
        )

    def shipped_config(self, path: Path) -> str:
        """The shipped file with only TEST_OVERRIDES replaced, for loopback and TLS here."""
        kept = [
            line for line in path.read_text().splitlines() if config_key(line) not in TEST_OVERRIDES
        ]
        cert, key = self._self_signed_certificate()
        relay_base = 40000 + (self.port % 2000) * 10
        overrides = [
            "# test overrides (harness/coturn.py)",
            "listening-ip=127.0.0.1",
            "relay-ip=127.0.0.1",
            f"listening-port={self.port}",
            f"tls-listening-port={self.tls_port}",
            f"min-port={relay_base}",
            f"max-port={relay_base + 9}",
            # Loopback only, and only the one address the tests relay to: every denied range of
            # the shipped file stays denied.
            "allow-loopback-peers",
            "allowed-peer-ip=127.0.0.1",
            *(f"{k}={v}" for k, v in self.file_settings(cert, key).items()),
        ]
        return "\n".join([*kept, *overrides, ""])

    def file_settings(self, cert: Path, key: Path) -> dict[str, str]:
        """Where the running server finds its certificate and keeps its state files (in a
        container: its own paths, see harness/coturn_container.py)."""
        return {
            "cert": str(cert),
            "pkey": str(key),
            "userdb": str(self.dir / "turndb"),
            "pidfile": str(self.dir / "turnserver.pid"),
        }

    def _self_signed_certificate(self) -> tuple[Path, Path]:
        cert, key = self.dir / "cert.pem", self.dir / "key.pem"
        if cert.exists() and key.exists():
            return cert, key  # the pair the running server loaded
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
            ],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        return cert, key

    def start(self, timeout: float = 15) -> None:
        conf = self.dir / "turnserver.conf"
        conf.write_text(self.config())
        log = (self.dir / "turnserver.log").open("wb")
        self.process = subprocess.Popen(
            ["turnserver", "-c", str(conf), *self.args], stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"turnserver exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"turnserver did not listen within {timeout}s: {self.log()}")

    def interrupt(self) -> None:
        """Kill the server (every relay it holds dies with it); start() brings it back on the
        same ports: a relay outage as a browser's candidates see it."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        path = self.dir / "turnserver.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def allocate(self, username: str, password: str) -> subprocess.CompletedProcess[str]:
        """Relay a few messages through an allocation made with these credentials."""
        return subprocess.run(
            [
                "turnutils_uclient", "-p", str(self.port), "-u", username, "-w", password,
                "-r", self.realm, "-y", "-n", "3", "-m", "1", "-l", "120", "-X", "127.0.0.1",
            ],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
