"""The runtime image's files, run the way the container runs them: as its user, with voice on, and
nothing writable but data/.

The image itself is built and run in tests/e2e/test_image.py; this test keeps what a container
cannot show as easily: the final stage's COPY instructions are replayed into a directory (what
they copy from the builder comes from this checkout's `make setup`, `make models` and `make
web`, which the builder runs) and the service's every connection is traced. Everything is made
read-only except data/, HOME is /app as `useradd --home-dir /app` makes it, and the image's CMD
starts with the image's environment. As root (CI, the sessions) it runs as uid 10001 through
setpriv, in a private mount namespace where the venv and the models are read-only bind mounts at
/app/.venv and /app/models (as the image has them, without copying gigabytes) and the venv's
base interpreter is reachable at its own path even when the checkout or the interpreter sits in
a directory closed to other users (a 0700 home); otherwise the read-only modes do the refusing.
A write anywhere else (a cache under HOME, bytecode, a temp file next to the code) fails here as
it would in the container. strace records every address the service connects or sends to while
it loads, builds its UI and runs an interview: none may be off this machine's loopback (no
analytics, no model hub, no DNS lookup).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from harness.ports import free_port
from tests.test_dockerfile import DOCKERFILE, ROOT, Stage, parse_dockerfile

IMAGE_UID = 10001
AS_ROOT = os.geteuid() == 0
LIVE = "/api/interview/health/live"
# The venv the tests run in: `make setup`'s, the same pinned packages as the image's.
VENV = Path(sys.prefix)
# What the final stage copies from the builder, and where this checkout has it. A new COPY
# from the builder fails the test until it is listed here.
BUILDER_OUTPUTS = {
    "/app/.venv": VENV,
    "/app/models": ROOT / "models",
    "/app/ui/web/dist": ROOT / "ui" / "web" / "dist",
}
# Too large to copy for each run: mounted (root) or linked (any other user) into the image.
MOUNTED = {"/app/.venv", "/app/models"}


@dataclass
class Image:
    """/app as the image has it, and the checkout's directories mounted into it (target: source)."""

    app: Path
    mounts: dict[Path, Path] = field(default_factory=dict)


@pytest.fixture(scope="module")
def final_stage() -> Stage:
    return parse_dockerfile(DOCKERFILE.read_text())[-1]


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _docker_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it: anchored at the context's root, `*` within
    one path element, `**/` any number of directories (so `turn` is the top-level folder only,
    not interview/speech/turn)."""
    out = ""
    rest = pattern.strip("/")
    while rest:
        if rest.startswith("**/"):
            out, rest = out + "(?:.*/)?", rest[3:]
        elif rest.startswith("**"):
            out, rest = out + ".*", rest[2:]
        elif rest[0] == "*":
            out, rest = out + "[^/]*", rest[1:]
        elif rest[0] == "?":
            out, rest = out + "[^/]", rest[1:]
        else:
            out, rest = out + re.escape(rest[0]), rest[1:]
    return re.compile(out)


def _ignored(patterns: list[str]):
    compiled = [_docker_pattern(pattern) for pattern in patterns]

    def ignore(directory: str, names: list[str]) -> set[str]:
        relative = Path(directory).relative_to(ROOT)
        return {
            name
            for name in names
            for pattern in compiled
            if pattern.fullmatch((relative / name).as_posix().removeprefix("./"))
        }

    return ignore


def _in_app(app: Path, dest: str) -> Path:
    # WORKDIR is /app: "./interview", "./" and "/app/models" all land under it.
    relative = dest.removeprefix("/app").removeprefix("/").removeprefix("./")
    return app / relative


def replay_copies(stage: Stage, image: Image) -> None:
    app = image.app
    ignore = _ignored(_dockerignore())
    for instruction in stage.all("COPY"):
        parts = shlex.split(instruction.args)
        from_builder = any(p.startswith("--from=") for p in parts)
        *sources, dest = [p for p in parts if not p.startswith("--")]
        for source in sources:
            if from_builder:
                assert source in BUILDER_OUTPUTS, f"COPY from the builder not replayed: {source}"
                built = BUILDER_OUTPUTS[source].resolve()
                target = _in_app(app, dest)
                target.parent.mkdir(parents=True, exist_ok=True)
                if source not in MOUNTED:
                    shutil.copytree(built, target)
                elif AS_ROOT:
                    target.mkdir()  # the mount point, filled in the app's mount namespace
                    image.mounts[target] = built
                else:
                    target.symlink_to(built)  # mounting needs root; our own files we reach
                continue
            origin = ROOT / source
            target = _in_app(app, dest)
            if origin.is_dir():
                shutil.copytree(origin, target, ignore=ignore, dirs_exist_ok=True)
            else:
                if dest.endswith("/"):
                    target = target / origin.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)


def _set_modes(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        if writable:
            path.chmod(mode | stat.S_IWUSR)
        else:
            path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def closed_parent(path: Path) -> Path | None:
    """The outermost directory above `path` that other users may not enter (a 0700 home), or
    None when the image's user can reach `path`."""
    for parent in reversed(path.parents):
        if not parent.stat().st_mode & stat.S_IXOTH:
            return parent
    return None


@pytest.fixture(scope="module")
def image(final_stage: Stage) -> Iterator[Image]:
    """/app as the image has it, read-only but data/ (owned by the image's user when root)."""
    assert (ROOT / "ui" / "web" / "dist" / "index.html").exists(), "make web first"
    top = Path(tempfile.mkdtemp(prefix="spool-image-"))
    top.chmod(0o755)  # another user must be able to reach /app through it
    assert closed_parent(top) is None, f"the image's user cannot reach {top}: set TMPDIR"
    built = Image(top / "app")
    built.app.mkdir()
    try:
        replay_copies(final_stage, built)
        data = built.app / "data"
        data.mkdir()  # the Dockerfile's `mkdir -p /app/data && chown spool:spool /app/data`
        _set_modes(built.app, writable=False)
        data.chmod(0o755)
        if AS_ROOT:
            os.chown(data, IMAGE_UID, IMAGE_UID)
        yield built
    finally:
        _set_modes(top, writable=True)
        shutil.rmtree(top, ignore_errors=True)


def in_image_namespace(image: Image, command: list[str]) -> list[str]:
    """`command` in a private mount namespace (as root) holding the image's mounts.

    The venv and the models are bind-mounted read-only at /app/.venv and /app/models. The venv's
    base interpreter (its `bin/python` links and pyvenv.cfg name it by absolute path) must be
    reachable by the image's user: where a directory above it is closed to other users (pyenv
    under a 0700 /root), an empty read-only tmpfs covers that directory in the namespace, with
    only the interpreter mounted back at its own path. The host's mounts are untouched.
    """
    if not AS_ROOT:
        return command
    steps = [["mount", "-o", "bind,ro", str(s), str(t)] for t, s in image.mounts.items()]
    base = Path(sys.base_prefix).resolve()
    closed = closed_parent(base)
    if closed is not None:
        stash = image.app.parent / "interpreter"  # reachable, and outside `closed`
        stash.mkdir()
        steps += [
            ["mount", "-o", "bind,ro", str(base), str(stash)],
            ["mount", "-t", "tmpfs", "-o", "mode=0755,size=1m", "tmpfs", str(closed)],
            ["mkdir", "-p", str(base)],
            ["mount", "--move", str(stash), str(base)],
            ["mount", "-o", "remount,ro", str(closed)],
        ]
    script = " && ".join([*map(shlex.join, steps), 'exec "$@"'])
    # unshare execs (no fork): the shell, then `command`, keep the pid the test started.
    return ["unshare", "--mount", "--propagation=private", "--", "sh", "-c", script, "sh", *command]


def as_image_user(command: list[str]) -> list[str]:
    if not AS_ROOT:
        return command
    return [
        "setpriv",
        f"--reuid={IMAGE_UID}",
        f"--regid={IMAGE_UID}",
        "--clear-groups",
        "--",
        *command,
    ]


def traced(command: list[str], trace: Path) -> list[str]:
    """`command` under strace, recording every socket it connects or sends to (seccomp-bpf
    keeps the other system calls at full speed)."""
    return [
        "strace",
        "--seccomp-bpf",
        "-f",
        "-qq",
        "-e",
        "trace=connect,sendto,sendmsg,sendmmsg",
        "-o",
        str(trace),
        *command,
    ]


_ADDRESS = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')


_DNS = re.compile(r"htons\(53\)|/run/systemd/resolve/")


def remote_addresses(trace: Path) -> set[str]:
    """Every IP address the traced process connected or sent to off loopback, and every name
    lookup (port 53 anywhere, loopback resolvers such as 127.0.0.53 included, or resolved's
    socket): an attempt to go out that fails at its lookup is still an attempt."""
    found = set()
    for line in trace.read_text(errors="replace").splitlines():
        if _DNS.search(line):
            found.add(f"name lookup: {line.strip()[:160]}")
        for v4, v6 in _ADDRESS.findall(line):
            address = ipaddress.ip_address(v4 or v6)
            mapped = getattr(address, "ipv4_mapped", None)
            if not (address.is_loopback or (mapped is not None and mapped.is_loopback)):
                found.add(str(address))
    return found


def test_remote_addresses_are_read_from_a_trace(tmp_path: Path):
    trace = tmp_path / "trace"
    trace.write_text(
        '9 connect(5, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("20.42.65.92")}'
        ", 16) = -1 ENETUNREACH\n"
        '9 connect(6, {sa_family=AF_INET, sin_port=htons(80), sin_addr=inet_addr("127.0.0.1")}'
        ", 16) = 0\n"
        '9 sendto(7, "x", 1, 0, {sa_family=AF_INET6, sin6_port=htons(53), '
        'sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr)}, 28) = 1\n'
        "9 connect(8, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), "
        'inet_pton(AF_INET6, "2001:db8::1", &sin6_addr)}, 28) = -1\n'
    )
    found = remote_addresses(trace)
    assert {a for a in found if not a.startswith("name lookup")} == {"20.42.65.92", "2001:db8::1"}
    # A lookup through a loopback resolver is an attempt to go out all the same.
    assert [a for a in found if a.startswith("name lookup")] == [
        'name lookup: 9 sendto(7, "x", 1, 0, {sa_family=AF_INET6, sin6_port=htons(53), '
        'sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr)}, 28) = 1'
    ]


def app_process(process: subprocess.Popen[bytes]) -> int:
    """The app's pid: strace's only child (setpriv execs it, so it is the same process)."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def mapped_files(pid: int) -> set[str]:
    """The files a process has mapped (its executable, shared libraries, extension modules)."""
    rows = (line.split(maxsplit=5) for line in Path(f"/proc/{pid}/maps").read_text().splitlines())
    return {row[5] for row in rows if len(row) == 6}


def test_the_image_runs_as_its_user_with_voice_and_writes_only_data(
    final_stage: Stage, image: Image, tmp_path: Path
):
    image_root = image.app
    port = free_port()
    # A container's environment: the image's ENV and HOME, nothing from this shell. Its PATH
    # starts with /app/.venv/bin, so the CMD's `python` is the image's venv.
    env = final_stage.env()
    assert env["PATH"] == "/app/.venv/bin:$PATH", "the image's PATH changed: replay it here"
    env.update(
        PATH=f"{_in_app(image_root, '/app/.venv/bin')}:/usr/local/bin:/usr/bin:/bin",
        HOME=str(image_root),
        HOST="127.0.0.1",
        PORT=str(port),
    )
    command = final_stage.last("CMD").exec_form
    assert command is not None and command[0] == "python"
    log, trace = tmp_path / "image.log", tmp_path / "network.trace"
    with log.open("wb") as out:
        process = subprocess.Popen(
            in_image_namespace(image, traced(as_image_user(command), trace)),
            cwd=image_root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    api = f"{base}/api/interview"
    try:
        # Ready means the speech models loaded from the read-only models directory.
        deadline = time.monotonic() + 240
        while True:
            assert process.poll() is None, log.read_text(errors="replace")
            try:
                if httpx.get(base + LIVE, timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.5)
        # The interpreter is the tests' own (not another Python found by the loader when the
        # base interpreter's directory is out of reach), with the packages of /app/.venv.
        app_pid = app_process(process)
        mapped = mapped_files(app_pid)
        base_lib = f"{Path(sys.base_prefix).resolve()}/lib/"
        assert any(path.startswith(base_lib) for path in mapped), sorted(mapped)
        assert any(path.startswith(f"{image_root}/.venv/lib/") for path in mapped), sorted(mapped)
        with httpx.Client(base_url=api, timeout=30) as client:
            assert client.get("/health").json()["status"] == "ok"
            started = client.post("/start", json={"user_id": "image-check"})
            assert started.status_code == 201, started.text
            sid, token = started.json()["session_id"], started.json()["token"]
            headers = {"Authorization": f"Bearer {token}"}
            answer = client.post(
                f"/{sid}/transcript",
                json={"text": "I built and ran the billing service for three years."},
                headers=headers,
            )
            assert answer.status_code == 200, answer.text
            assert client.post(f"/{sid}/end", headers=headers).status_code == 200
            report = client.get(f"/{sid}/results", headers=headers)
            for _ in range(100):
                if report.status_code != 202:
                    break
                time.sleep(0.2)
                report = client.get(f"/{sid}/results", headers=headers)
            assert report.status_code == 200, report.text
        # The two browser faces are served from the read-only tree.
        assert httpx.get(f"{base}/demo/", timeout=30).status_code == 200
        assert httpx.get(f"{base}/ui/", timeout=60, follow_redirects=True).status_code == 200
        # The database is where the image's user may write, and nowhere else was written.
        assert (image_root / "data" / "spool.db").exists()
        if AS_ROOT:
            assert (image_root / "data" / "spool.db").stat().st_uid == IMAGE_UID
            assert Path(f"/proc/{app_pid}").stat().st_uid == IMAGE_UID
        os.kill(app_pid, signal.SIGTERM)  # to the app itself, not to strace
        code = process.wait(timeout=int(env["SHUTDOWN_GRACE_SECONDS"]) + 5)
        text = log.read_text(errors="replace")
        assert code in (0, -signal.SIGTERM), text
        for refusal in ("PermissionError", "Permission denied", "Read-only file system"):
            assert refusal not in text, text
        # No library tried to keep a telemetry identifier under HOME (onnxruntime does unless
        # interview.no_telemetry turns it off first)...
        assert "telemetry" not in text.lower(), text
        # ...nor reached anything but this machine's loopback: no analytics, no model hub, no
        # DNS lookup, while the models loaded, the UI was built and an interview ran.
        assert trace.stat().st_size > 0, "the trace recorded nothing, not even the client"
        assert remote_addresses(trace) == set(), trace.read_text(errors="replace")[-4000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
