"""turn/docker-compose.turn.yml's coturn service, run for real in Docker (harness/compose.py).

The image is coturn from Debian's package (docker/coturn/Dockerfile, TURN_IMAGE), as the compose
file allows where Docker Hub's coturn/coturn cannot be pulled. Everything else is the compose
file's: host networking, turn/coturn-entrypoint.sh as the entrypoint, the config and the
certificate folder mounted read-only, TURN_SECRET as a compose secret, the private tmpfs, the
realm and external IP as arguments. The test's config is the shipped one with harness/coturn.py's
TEST_OVERRIDES, mounted where compose mounts turnserver.conf; its throwaway certificate sits in
TURN_CERT_DIR under the names the shipped config reads.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from harness.compose import run_args
from harness.coturn import CoturnServer
from harness.docker import LABEL, base_image, docker

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "turn" / "docker-compose.turn.yml"
IMAGE = "spool-interview/coturn:debian"
# Where the compose file mounts the certificates, and the image's user (nobody).
CERTS = "/etc/coturn/certs"
RUN_DIR = "/run/coturn"
NOBODY = 65534


def build_image() -> str:
    """docker/coturn/Dockerfile on the project's base (official or stand-in); the tag."""
    docker(
        "build", "--build-arg", f"BASE_IMAGE={base_image()}", "--tag", IMAGE,
        str(ROOT / "docker" / "coturn"),
        timeout=900,
    )  # fmt: skip
    return IMAGE


class CoturnContainer(CoturnServer):
    def __init__(self, secret: str, realm: str, config_file: Path, env: dict[str, str]) -> None:
        super().__init__(secret, realm=realm, config_file=config_file)
        self.env = env
        self.name = f"spool-test-coturn-{os.getpid()}-{self.port}"

    def file_settings(self, cert: Path, key: Path) -> dict[str, str]:
        # The shipped certificate paths (the compose mount), state on the private tmpfs.
        return {
            "cert": f"{CERTS}/fullchain.pem",
            "pkey": f"{CERTS}/privkey.pem",
            "userdb": f"{RUN_DIR}/turndb",
            "pidfile": f"{RUN_DIR}/turnserver.pid",
        }

    def start(self, timeout: float = 30) -> None:
        conf = self.dir / "turnserver.conf"
        conf.write_text(self.config())
        conf.chmod(0o644)
        certs = self.dir / "certs"
        certs.mkdir(exist_ok=True)
        cert, key = self._self_signed_certificate()
        shutil.copy(cert, certs / "fullchain.pem")
        shutil.copy(key, certs / "privkey.pem")
        for path in (certs / "fullchain.pem", certs / "privkey.pem"):
            os.chown(path, NOBODY, NOBODY)  # readable by the image's user alone, as advised
            path.chmod(0o400)
        secrets = self.dir / "secrets"
        secrets.mkdir(exist_ok=True)
        env = {**self.env, "TURN_SECRET": self.secret, "TURN_CERT_DIR": str(certs)}
        options, image, args = run_args(
            COMPOSE, "coturn", env, secrets, {"/etc/coturn/turnserver.conf": conf}
        )
        docker("run", "--detach", "--name", self.name, "--label", LABEL, *options, image, *args)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = docker("inspect", "--format", "{{.State.Running}}", self.name).stdout.strip()
            if state != "true":
                raise RuntimeError(f"the coturn container exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the coturn container did not listen within {timeout}s: {self.log()}")

    def interrupt(self) -> None:
        docker("kill", self.name, check=False)

    def stop(self) -> None:
        docker("rm", "--force", self.name, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        result = docker("logs", self.name, check=False, timeout=30)
        return result.stdout + result.stderr

    def processes(self) -> list[tuple[int, int, list[str]]]:
        """The container's processes as the host sees them: (pid, uid, arguments), the
        arguments whole from /proc (ps cuts them to its column width)."""
        found = []
        for line in docker("top", self.name, "-o", "pid,uid").stdout.splitlines()[1:]:
            pid, uid = (int(field) for field in line.split())
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
            found.append((pid, uid, [arg.decode() for arg in argv]))
        return found

    def inspect(self, template: str) -> str:
        return docker("inspect", "--format", template, self.name).stdout.strip()

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return docker("exec", self.name, *command, check=False)
