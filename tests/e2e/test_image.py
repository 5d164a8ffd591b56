"""The Dockerfile built and run for real: the image the README deploys.

Debian's Docker engine (started here when it is not running) builds the Dockerfile with
build-and-push.sh, from python:3.11-slim-trixie when Docker Hub can be reached and otherwise from
the stand-in docker/standin-base.sh makes from Debian packages. The container then runs as
production runs it, but on the host network so that every packet stays on loopback: read-only
but for its data volume, as uid 10001, healthy by its own HEALTHCHECK; a text interview and a
spoken one (a real aiortc peer) to their results; SIGTERM during a live call, with the drain the
README promises. build-and-push.sh pushes to a local registry (Debian's docker-registry, with a
login) standing in for ECR, and the image pulled back by digest is the one built.

The build's times and the image's size are written to test-artifacts/image.json and printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness.docker import (
    BUILD_ENV,
    ROOT,
    Container,
    Engine,
    Registry,
    base_image,
    build_ca_args,
    checkout_copy,
    docker,
    image_id,
    image_size,
    remove_older_images,
    remove_test_leftovers,
)
from harness.ports import free_port
from harness.speech_audio import speech
from harness.voice_client import VoiceClient, start_session
from tests.api.helpers import auth
from tests.e2e.conftest import recall

REPOSITORY = "spool-interview-test"
TITLE = "spool-interview"  # the Dockerfile's image title label
IMAGE_UID = 10001
# The image's size limit (README: "The image"). Measured: 1.96 GB on the stand-in base, of it
# the venv 1.41 GB (onnxruntime, CTranslate2, gradio, scipy, and numba that librosa brings for
# Kokoro) and the models 358 MB (Whisper tiny.en and base, Kokoro int8 and its voices, Smart
# Turn, Silero); the official slim base is smaller than the stand-in. About 15 % of headroom:
# a new dependency or model that pushes past it must say why.
SIZE_LIMIT_BYTES = 2_300_000_000
ARTIFACTS = ROOT / "test-artifacts"
# Short enough for a test, long enough for the answer in flight to be heard and answered.
GRACE_SECONDS = 20
ANSWER = (
    "I moved our billing service to a queue with idempotent workers, "
    "and I measured every release with error budgets."
)
SPOKEN = "I built a billing service in Python and I made it reliable with careful tests."


@dataclass
class Build:
    tag: str
    image: str
    base: str
    seconds: float
    cold: bool  # the builder's `make setup` ran (no cached layer of it)


def build_with_script(*args: str, env: dict[str, str] | None = None) -> tuple[str, float]:
    """build-and-push.sh ARGS from this checkout; its output and the seconds it took."""
    began = time.monotonic()
    result = subprocess.run(
        [str(ROOT / "build-and-push.sh"), *build_ca_args(), *args],
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
        env={**os.environ, **BUILD_ENV, **(env or {})},
    )
    seconds = time.monotonic() - began
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return output, seconds


def commit() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    running = Engine.ensure(tmp_path_factory.mktemp("dockerd"))
    remove_test_leftovers()
    yield running
    remove_test_leftovers()
    running.close()


@pytest.fixture(scope="module")
def built(engine: Engine) -> Iterator[Build]:
    base = base_image()
    tag = f"{commit()}-{os.getpid()}"
    output, seconds = build_with_script(
        "--no-push", "--repository", REPOSITORY, "--tag", tag, "--base", base
    )
    setup_step = re.search(r"RUN make setup\n(.*)\n", output)
    cold = setup_step is not None and "Using cache" not in setup_step.group(1)
    image = f"{REPOSITORY}:{tag}"
    yield Build(tag, image, base, seconds, cold)
    remove_older_images(REPOSITORY, keep=image, title=TITLE)


def test_the_image_builds_small_enough_and_rebuilds_fast_after_a_code_change(
    built: Build, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    size = image_size(built.image)
    # A code change, in a copy of the checkout's tracked files: only the layers from the code
    # on are built again (the venv and the models come from the cache).
    context = checkout_copy(tmp_path / "context")
    with (context / "app.py").open("a") as app:
        app.write("\n# a code change\n")
    warm_tag = f"{REPOSITORY}:{built.tag}-warm"
    began = time.monotonic()
    warm = docker(
        "build", "--build-arg", f"BASE_IMAGE={built.base}", "--tag", warm_tag, str(context),
        timeout=1800,
    )  # fmt: skip
    warm_seconds = time.monotonic() - began
    try:
        steps = re.findall(
            r"Step \d+/\d+ : (RUN make \w+|COPY app\.py)[^\n]*\n ---> (.*)", warm.stdout
        )
        cached = {step: outcome.startswith("Using cache") for step, outcome in steps}
        assert cached == {
            "RUN make setup": True,
            "RUN make models": True,
            "RUN make web": True,
            "COPY app.py": False,
        }
    finally:
        docker("rmi", warm_tag, check=False)

    report = {
        "image": built.image,
        "base": built.base,
        "size_bytes": size,
        "size_limit_bytes": SIZE_LIMIT_BYTES,
        "first_build_seconds": round(built.seconds, 1),
        "first_build_was_cold": built.cold,
        "rebuild_after_code_change_seconds": round(warm_seconds, 1),
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "image.json").write_text(json.dumps(report, indent=2) + "\n")
    with capsys.disabled():
        print(f"\nimage: {json.dumps(report)}")
    assert size < SIZE_LIMIT_BYTES, report


@pytest.fixture(scope="module")
def volume(engine: Engine) -> Iterator[str]:
    name = f"spool-test-data-{os.getpid()}"
    docker("volume", "create", "--label", "spool.test=1", name)
    yield name
    docker("volume", "rm", "-f", name, check=False)


def service(built: Build, volume: str, name: str, **env: str) -> Container:
    port = free_port()
    settings = {
        # The host's loopback only: the host network has no port publishing to limit it.
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
        "DRAIN_MIN_SECONDS": "0.5",
        # A silent test client is not checked in on (a turn the tests do not expect).
        "CHECK_IN_AFTER_SECONDS": "0",
        **env,
    }
    container = Container(
        built.image,
        name,
        port=port,
        run_args=[
            # As the image says (USER), not as the test says: no --user here.
            "--read-only",
            "--volume", f"{volume}:/app/data",
            # The image's own check, asked every 2 s instead of 30 s so the test waits less.
            "--health-interval", "2s",
            *(arg for key, value in settings.items() for arg in ("--env", f"{key}={value}")),
        ],
    )  # fmt: skip
    return container


def api(container: Container) -> str:
    return f"http://127.0.0.1:{container.port}/api/interview"


@pytest.fixture(scope="module")
def running(built: Build, volume: str) -> Iterator[Container]:
    container = service(built, volume, f"spool-test-{os.getpid()}")
    container.start()
    try:
        container.wait_healthy(timeout=300)
        yield container
    finally:
        container.remove()


def test_it_runs_read_only_as_its_user_and_its_healthcheck_passes(running: Container):
    assert running.health() == "healthy"
    user = docker("image", "inspect", "--format", "{{.Config.User}}", running.image).stdout
    assert user.strip() == f"{IMAGE_UID}:{IMAGE_UID}"
    host = json.loads(docker("inspect", "--format", "{{json .HostConfig}}", running.name).stdout)
    assert host["ReadonlyRootfs"] is True
    # The service's own processes (the server and the accurate pass's child) run as 10001.
    top = docker("top", running.name, "-o", "pid,uid,args").stdout.splitlines()[1:]
    assert top and all(line.split()[1] == str(IMAGE_UID) for line in top), top
    deep = httpx.get(f"{api(running)}/health", timeout=10).json()
    assert deep["status"] == "ok", deep


async def results(base: str, sid: str, token: str, within: float = 180) -> dict:
    async with httpx.AsyncClient(base_url=base, timeout=20) as http:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            response = await http.get(f"/{sid}/results", headers=auth(token))
            if response.status_code == 200:
                report: dict = response.json()
                return report
            assert response.status_code == 202, response.text
            await asyncio.sleep(1)
    raise AssertionError(f"no results within {within} s")


async def test_a_text_interview_to_its_results(running: Container):
    base = api(running)
    sid, token = await start_session(base, user_id="image-text")
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        for _ in range(20):
            answered = await http.post(
                f"/{sid}/transcript", json={"text": ANSWER}, headers=auth(token)
            )
            assert answered.status_code == 200, answered.text
            if answered.json()["interviewer_turn"]["kind"] == "close":
                break
        else:
            raise AssertionError("the interview never closed")
    report = await results(base, sid, token)
    answers = [a["text"] for q in report["questions"] for a in q["answers"]]
    assert answers and all(text == ANSWER for text in answers), report


async def test_a_spoken_interview_to_its_results(running: Container):
    base = api(running)
    sid, token = await start_session(base, user_id="image-voice")
    client = await VoiceClient.connect(base, sid, token)
    try:
        greeting = await client.wait_for_reply(timeout=60, silence=2.0)
        assert greeting.duration > 1.0
        said = await client.say(speech(SPOKEN))
        reply = await client.wait_for_reply(after=said.speech_ended_at, timeout=60)
        assert reply.duration > 0.5
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
            turns = (await http.get(f"/{sid}/transcript", headers=auth(token))).json()["turns"]
            answer = next(t for t in turns if t["role"] == "candidate")
            assert answer["source"] == "voice"
            assert recall(SPOKEN, answer["text"]) >= 0.7, answer
            assert (await http.post(f"/{sid}/end", headers=auth(token))).status_code == 200
        await asyncio.wait_for(client.closed.wait(), timeout=20)
    finally:
        await client.close()
    # The report waits for the accurate pass, which runs in the container's idle child.
    report = await results(base, sid, token)
    [spoken] = [a for q in report["questions"] for a in q["answers"]]
    assert spoken["transcription"] == "accurate", spoken
    assert recall(SPOKEN, spoken["text"]) >= 0.8, spoken


async def test_sigterm_during_a_live_call_drains_and_keeps_the_answer(
    running: Container, built: Build, volume: str
):
    """Last of the running container's tests: it stops it."""
    base = api(running)
    sid, token = await start_session(base, user_id="image-drain")
    client = await VoiceClient.connect(base, sid, token)
    try:
        await client.wait_for_reply(timeout=60, silence=2.0)
        answer = await client.say(speech(SPOKEN), wait=False)
        await asyncio.sleep(1.0)
        running.signal("TERM")
        stopped_at = time.monotonic()
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            health = await http.get("/health")
            assert health.status_code == 503
            assert health.json()["checks"]["accepting"] == {"ok": False, "detail": "draining"}
            refused = await http.post("/start", json={"user_id": "too-late"})
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"
            assert int(refused.headers["retry-after"]) > 0
        # The answer in flight is heard and committed; then the call is closed by the drain.
        await answer.wait_speech_sent(timeout=20)
        await asyncio.wait_for(client.closed.wait(), timeout=GRACE_SECONDS + 5)
    finally:
        await client.close()
    code = await asyncio.to_thread(running.wait_exit, GRACE_SECONDS + 10)
    elapsed = time.monotonic() - stopped_at
    assert code == 0, running.logs()
    assert elapsed < GRACE_SECONDS + 3, elapsed

    # A new container on the same volume: the answer is there, the interview resumable.
    again = service(built, volume, f"spool-test-again-{os.getpid()}", VOICE_ENABLED="false")
    again.start()
    try:
        again.wait_healthy(timeout=120)
        async with httpx.AsyncClient(base_url=api(again), timeout=20) as http:
            turns = (await http.get(f"/{sid}/transcript", headers=auth(token))).json()["turns"]
            spoken = [t for t in turns if t["role"] == "candidate"]
            assert spoken and spoken[0]["source"] == "voice", turns
            assert recall(SPOKEN, spoken[0]["text"]) >= 0.7, spoken
            status = (await http.get(f"/{sid}/status", headers=auth(token))).json()
            assert status["connection_state"] in ("disconnected", "closed"), status
    finally:
        again.remove()


def test_build_and_push_to_a_registry_and_pull_it_back_by_digest(built: Build):
    """Last of the module's tests: it removes the built image's local tags."""
    registry = Registry()
    repository = "spool/interview"
    remote = f"{registry.host}/{repository}:{built.tag}"
    pulled = ""
    try:
        registry.start()
        output, _ = build_with_script(
            "--registry", registry.host, "--repository", repository,
            "--tag", built.tag, "--base", built.base,
            env={"REGISTRY_USERNAME": registry.username, "REGISTRY_PASSWORD": registry.password},
        )  # fmt: skip
        assert registry.password not in output
        assert f"IMAGE_URI={remote}" in output
        [digest] = re.findall(r"^IMAGE_DIGEST=(sha256:[0-9a-f]{64})$", output, re.MULTILINE)
        assert registry.manifest_digest(repository, built.tag) == digest
        # Every local name of the image removed first, so the pull fetches every layer from the
        # registry: what comes back by digest is the very image built.
        built_id = image_id(built.image)
        assert image_id(f"{repository}:{built.tag}") == built_id
        remove_test_leftovers()  # the stopped containers of the image
        docker("rmi", remote, f"{repository}:{built.tag}", built.image)
        pulled = f"{registry.host}/{repository}@{digest}"
        pull = docker("pull", pulled, timeout=900)
        assert "Pull complete" in pull.stdout, pull.stdout  # layers came over the wire
        assert image_id(pulled) == built_id
    finally:
        docker(
            "rmi", remote, f"{repository}:{built.tag}", *([pulled] if pulled else []), check=False
        )
        registry.close()
