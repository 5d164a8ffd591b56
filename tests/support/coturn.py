"""A real coturn (Debian's package) on a free loopback port, with TURN REST auth."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.ports import free_port


class CoturnServer:
    def __init__(self, secret: str, realm: str = "spool.test") -> None:
        if shutil.which("turnserver") is None:
            raise RuntimeError("coturn is not installed: run `make test` (it installs it)")
        self.secret = secret
        self.realm = realm
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="spool-turn-"))
        self.process: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
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

    def start(self, timeout: float = 15) -> None:
        conf = self.dir / "turnserver.conf"
        conf.write_text(self.config())
        log = (self.dir / "turnserver.log").open("wb")
        self.process = subprocess.Popen(
            ["turnserver", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
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
