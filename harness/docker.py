"""Docker for the image tests: Debian's engine (started here when it is not running), the
project's images built by its own scripts, containers on the host network, a registry.

The containers and volumes the tests create carry the label `spool.test=1`, so a test run
removes what an earlier, killed run left behind; the registry's data lives in a temporary
directory removed with it; earlier builds of the project's images are pruned by their title
label, nobody else's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from harness.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
LABEL = "spool.test=1"
# The system's CA bundle, joined to the image's build stage (build-and-push.sh --build-ca): this
# machine reaches PyPI and npm through a proxy that re-signs TLS.
SYSTEM_CA = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
# The images the project builds carry it (the Dockerfiles' LABEL): only theirs are pruned.
TITLE_LABEL = "org.opencontainers.image.title"
# The classic builder, whose `Step N/M ... ---> Using cache` lines the tests read (a Docker with
# the buildx plugin would use BuildKit).
BUILD_ENV = {"DOCKER_BUILDKIT": "0"}


def build_ca_args() -> list[str]:
    """build-and-push.sh's --build-ca with this machine's CA bundle, when it has one."""
    return ["--build-ca", str(SYSTEM_CA)] if SYSTEM_CA.is_file() else []


class DockerError(RuntimeError):
    pass


def docker(
    *args: str, timeout: float = 120, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`docker ARGS`; DockerError with its output when it fails and `check` is set."""
    result = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        input=input,
        env={**os.environ, **BUILD_ENV},
    )
    if check and result.returncode != 0:
        raise DockerError(f"docker {' '.join(args)}: {result.returncode}\n{result.stderr[-3000:]}")
    return result


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it is still running after `timeout` seconds."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Engine:
    """The Docker engine: dockerd started by `ensure` (and stopped by `close`) unless one runs."""

    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @classmethod
    def ensure(cls, log_dir: Path, timeout: float = 60) -> Engine:
        if shutil.which("docker") is None or shutil.which("dockerd") is None:
            raise RuntimeError("Docker is not installed: run `make test` (it installs docker.io)")
        if docker("info", timeout=30, check=False).returncode == 0:
            return cls()
        log_path = log_dir / "dockerd.log"
        process = subprocess.Popen(
            ["dockerd"], stdout=log_path.open("ab"), stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"dockerd exited:\n{log_path.read_text()[-3000:]}")
            if docker("info", timeout=30, check=False).returncode == 0:
                return cls(process, log_path)
            time.sleep(0.5)
        process.terminate()
        raise RuntimeError(f"dockerd not ready in {timeout} s:\n{log_path.read_text()[-3000:]}")

    def close(self) -> None:
        stop_process(self.process, 30)


def remove_test_leftovers() -> None:
    """Containers and volumes of earlier test runs (killed before their own clean-up)."""
    containers = docker("ps", "-aq", "--filter", f"label={LABEL}").stdout.split()
    if containers:
        docker("rm", "-f", *containers, check=False)
    volumes = docker("volume", "ls", "-q", "--filter", f"label={LABEL}").stdout.split()
    if volumes:
        docker("volume", "rm", "-f", *volumes, check=False)


def base_image() -> str:
    """The Dockerfile's base: the official image if present or pullable, else the stand-in
    that docker/standin-base.sh builds from Debian packages (kept between runs)."""
    # Its own process group: on a timeout, debootstrap and the chroot's apt go with it.
    process = subprocess.Popen(
        [str(ROOT / "docker" / "standin-base.sh")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    if process.returncode != 0:
        raise DockerError(f"standin-base.sh failed:\n{err[-3000:]}")
    return out.strip().splitlines()[-1]


def checkout_copy(destination: Path) -> Path:
    """The checkout's tracked and new (not ignored) files copied to `destination`, with this
    machine's CA as docker/build-ca.crt: a build context a test or bench may change."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        source = ROOT / name
        if source.is_file() and "node_modules" not in source.parts:
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    if SYSTEM_CA.is_file():
        shutil.copy(SYSTEM_CA, destination / "docker" / "build-ca.crt")
    return destination


def image_id(reference: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", reference).stdout.strip()


def image_size(reference: str) -> int:
    return int(docker("image", "inspect", "--format", "{{.Size}}", reference).stdout)


def remove_older_images(repository: str, keep: str, title: str) -> list[str]:
    """Remove every tag of `repository` but `keep`, then the untagged images of the project's
    Dockerfile titled `title` (earlier builds); the removed tags. Nobody else's images."""
    listed = docker("images", "--format", "{{.Repository}}:{{.Tag}}", repository).stdout.split()
    old = [ref for ref in listed if ref != keep and not ref.endswith(":<none>")]
    if old:
        docker("rmi", *old, check=False)
    docker("image", "prune", "--force", "--filter", f"label={TITLE_LABEL}={title}", check=False)
    return old


@dataclass
class Container:
    """A container on the host network (all traffic on loopback), labelled for clean-up."""

    image: str
    name: str
    port: int = 0  # where it listens, when it serves
    run_args: Sequence[str] = ()
    command: Sequence[str] = ()

    def start(self) -> None:
        docker(
            "run", "--detach", "--name", self.name, "--label", LABEL, "--network", "host",
            *self.run_args, self.image, *self.command,
        )  # fmt: skip

    def state(self) -> dict[str, Any]:
        out = docker("inspect", "--format", "{{json .State}}", self.name).stdout
        state: dict[str, Any] = json.loads(out)
        return state

    def health(self) -> str | None:
        health = self.state().get("Health")
        return None if health is None else str(health["Status"])

    def wait_healthy(self, timeout: float) -> float:
        """Until Docker reports the image's HEALTHCHECK healthy; the seconds it took."""
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            state = self.state()
            if not state["Running"]:
                raise DockerError(f"{self.name} exited ({state['ExitCode']}):\n{self.logs()}")
            if state.get("Health", {}).get("Status") == "healthy":
                return time.monotonic() - began
            time.sleep(0.5)
        raise DockerError(f"{self.name} not healthy in {timeout} s: {self.state()}\n{self.logs()}")

    def wait_exit(self, timeout: float) -> int:
        result = docker("wait", self.name, timeout=timeout)
        return int(result.stdout.strip())

    def signal(self, name: str) -> None:
        docker("kill", "--signal", name, self.name)

    def logs(self) -> str:
        result = docker("logs", self.name, check=False, timeout=30)
        return (result.stdout + result.stderr)[-20000:]

    def remove(self) -> None:
        docker("rm", "-f", "-v", self.name, check=False)


@dataclass
class Registry:
    """Debian's docker-registry (distribution 2.8) on a free loopback port, with an htpasswd
    (bcrypt) login; its data in a temporary directory removed by `close`. Docker pushes to
    127.0.0.0/8 over plain HTTP by default, as to an ECR endpoint over HTTPS."""

    username: str = "spool-ci"
    password: str = field(default_factory=lambda: os.urandom(12).hex())
    port: int = field(default_factory=free_port)
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="spool-registry-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> None:
        htpasswd = self.dir / "htpasswd"
        subprocess.run(  # the password on stdin, not in the arguments
            ["htpasswd", "-iBc", str(htpasswd), self.username],
            input=self.password,
            text=True,
            check=True,
            capture_output=True,
            timeout=30,
        )
        config = self.dir / "config.yml"
        config.write_text(
            "\n".join(
                [
                    "version: 0.1",
                    "log: {level: warn}",
                    f"storage: {{filesystem: {{rootdirectory: {self.dir / 'data'}}}, "
                    "delete: {enabled: true}}",
                    f"http: {{addr: '{self.host}'}}",
                    f"auth: {{htpasswd: {{realm: spool-test, path: {htpasswd}}}}}",
                    "",
                ]
            )
        )
        self.process = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdout=(self.dir / "registry.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited:\n{self.log()}")
            try:
                # 401 without credentials: it is up, and it asks for the login.
                if httpx.get(f"http://{self.host}/v2/", timeout=2).status_code == 401:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"docker-registry not up in {timeout} s:\n{self.log()}")

    def manifest_digest(self, repository: str, tag: str) -> str:
        """The digest the registry serves for repository:tag (Docker-Content-Digest)."""
        response = httpx.head(
            f"http://{self.host}/v2/{repository}/manifests/{tag}",
            auth=(self.username, self.password),
            headers={
                "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                "application/vnd.oci.image.manifest.v1+json"
            },
            timeout=10,
        )
        response.raise_for_status()
        return response.headers["Docker-Content-Digest"]

    def log(self) -> str:
        path = self.dir / "registry.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        stop_process(self.process, 10)
        docker("logout", self.host, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
