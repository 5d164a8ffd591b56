"""A real round-robin reverse proxy (Debian's HAProxy) in front of the service's instances."""

from __future__ import annotations

import csv
import io
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.ports import free_port

# Which instance answered, as the proxy knows it (the name of the server it chose); the service
# itself is not asked. Errors the proxy makes itself (502, 503) carry no such header.
SERVED_BY = "X-Served-By"
HEALTH_PATH = "/api/interview/health/live"  # the load balancer's check (no database involved)


def haproxy_executable() -> str:
    # Debian installs it in /usr/sbin, which an unprivileged user's PATH may not hold.
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise RuntimeError("HAProxy is not installed: run `make test` (it installs it)")
    return found


@dataclass(frozen=True)
class Backend:
    name: str  # the instance's id: the proxy's server name, logged and sent in SERVED_BY
    port: int  # on 127.0.0.1


class HAProxy:
    """`balance roundrobin` over `backends`, HTTP mode, no cookie or any other stickiness.

    Every request is balanced on its own (keep-alive or not: HAProxy does not prefer the last
    server by default). A server is taken out after two failed health checks 0.25-0.5 s apart
    (GET HEALTH_PATH: a draining instance answers 503) and back in after two good ones. A request
    is retried (on another server: `option redispatch 1`) only when the connection to a server
    failed, so it never reached an instance: safe for any method. Nothing else is retried, as an
    ALB would not: a request an instance accepted and then dropped comes back as a 502.
    The config is generated into `directory`, with the access log (one line per request: the
    server that answered, status, method, path) and the stats socket that `states()` reads.
    """

    def __init__(self, backends: Sequence[Backend], directory: Path) -> None:
        self.backends = list(backends)
        self.directory = directory
        self.port = free_port()
        self.config_path = directory / "haproxy.cfg"
        self.socket_path = directory / "haproxy.sock"
        self.log_path = directory / "haproxy.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.base_url}/api/interview"

    def config(self) -> str:
        servers = "\n".join(f"    server {b.name} 127.0.0.1:{b.port} check" for b in self.backends)
        return f"""\
global
    log stdout format raw local0
    maxconn 4096
    stats socket {self.socket_path} mode 600 level admin

defaults
    mode http
    log global
    # The server that answered (%s), the status, the request, the time it took and how the
    # session ended (HAProxy's termination state, "----" when normally): what a test reads back.
    log-format "%s %ST %HM %HU %Ta %tsc"
    option forwardfor
    timeout connect 2s
    timeout http-request 10s
    # An idle keep-alive connection from a client is kept as long as the ALB keeps one (60 s).
    timeout http-keep-alive 60s
    timeout queue 10s
    # An instance busy on two cores may take a while to answer its health check: as long as the
    # ALB allows (5 s) before it counts as failed. A killed one refuses at once.
    timeout check 5s
    # /events streams (SSE) stay open for EVENTS_STREAM_SECONDS with a ping every 10 s; a voice
    # offer may wait for its relay. The client side only goes quiet while a response streams.
    timeout client 1h
    timeout server 60s
    # Only a failed connection is retried (the request never reached a server), on another one.
    retries 3
    retry-on conn-failure
    option redispatch 1

frontend spool
    bind 127.0.0.1:{self.port}
    default_backend instances

backend instances
    balance roundrobin
    http-request set-timeout server 1h if {{ path_end /events }}
    http-response set-header {SERVED_BY} %s
    option httpchk
    http-check send meth GET uri {HEALTH_PATH}
    http-check expect status 200
    default-server inter 500 fastinter 250 downinter 500 rise 2 fall 2
{servers}
"""

    def start(self, timeout: float = 10) -> None:
        self.config_path.write_text(self.config())
        binary = haproxy_executable()
        check = subprocess.run(
            [binary, "-c", "-q", "-f", str(self.config_path)], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise RuntimeError(f"HAProxy refused its config:\n{check.stdout}{check.stderr}")
        log = self.log_path.open("ab")
        # -db: stay in the foreground (no daemon), so the process is ours to signal and wait on.
        self.process = subprocess.Popen(
            [binary, "-db", "-f", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"HAProxy exited early:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                self.states()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"HAProxy not listening within {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM: HAProxy closes every connection at once (it never outlives a test run)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def command(self, line: str) -> str:
        """One command on the stats socket (HAProxy's runtime API); returns its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(os.fspath(self.socket_path))
            sock.sendall(f"{line}\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def states(self) -> dict[str, str]:
        """Each server's check status as HAProxy sees it: "UP", "DOWN", "UP 1/2" (going down),
        "DOWN 1/2" (coming up), "MAINT"."""
        text = self.command("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {
            row["svname"]: row["status"]
            for row in rows
            if row["pxname"] == "instances" and row["svname"] not in ("BACKEND", "FRONTEND")
        }

    def wait_states(self, expected: Mapping[str, str], timeout: float = 20) -> None:
        """Until every server named in `expected` is in that state ("UP" or "DOWN")."""
        deadline = time.monotonic() + timeout
        while True:
            states = self.states()
            if all(states.get(name) == state for name, state in expected.items()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"HAProxy servers {states}, expected {dict(expected)}")
            time.sleep(0.05)

    def served(self) -> list[tuple[str, int, str, str, str]]:
        """The access log so far, in the order the requests ended: (server, status, method,
        path, termination state) per request. The server is "<NOSRV>" when the proxy answered
        itself (no server up); the status is -1 when no response was sent; the termination
        state is "----" for a normal end (HAProxy's manual: "Session state at disconnection")."""
        entries = []
        for line in self.log().splitlines():
            parts = line.split()
            if len(parts) == 6 and parts[1].lstrip("-").isdigit():
                entries.append((parts[0], int(parts[1]), parts[2], parts[3], parts[5]))
        return entries

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
