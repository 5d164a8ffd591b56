"""Every shell script of the repository is shellcheck clean; build-and-push.sh does what it says.

build-and-push.sh runs here against stand-ins for the `docker` and `aws` commands (small scripts
first on PATH that record their arguments and stdin), so its flow is checked without a Docker
engine, AWS credentials or network: build, ECR login through a pipe, tag, push.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SCRIPT = ROOT / "build-and-push.sh"
ACCOUNT = "123456789012"
DIGEST = "ab" * 32  # what the stand-in `docker push` reports


def shell_scripts() -> list[Path]:
    """Tracked and new files (not ignored) that are shell scripts, by suffix or shebang."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    scripts = []
    for name in listed:
        path = ROOT / name
        if not path.is_file() or "node_modules" in path.parts:
            continue
        if path.suffix in (".sh", ".bash"):
            scripts.append(path)
            continue
        with path.open("rb") as file:
            first = file.readline(200)
        if first.startswith(b"#!") and any(
            first.rstrip().endswith(shell) for shell in (b"/sh", b"/bash", b" sh", b" bash")
        ):
            scripts.append(path)
    return sorted(scripts)


def test_the_scripts_are_found():
    found = {p.relative_to(ROOT).as_posix() for p in shell_scripts()}
    assert {"build-and-push.sh", "scripts/ensure-system-packages.sh", ".ci/run"} <= found


def test_every_shell_script_is_shellcheck_clean():
    scripts = shell_scripts()
    result = subprocess.run(
        [str(VENV_BIN / "shellcheck"), "--color=never", "--external-sources", *map(str, scripts)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


STUB = """#!/usr/bin/env bash
# Records how it was called (and its stdin, for `docker login --password-stdin`).
# One write per line: the two sides of a pipe log at the same time.
line="{name}$(printf ' %s' "$@")"
printf '%s\\n' "$line" >> "$STUB_LOG"
case "{name} $1 $2" in
  "docker login "*) printf 'stdin=%s\\n' "$(cat)" >> "$STUB_LOG" ;;
  # What the build context holds at build time: the CA a --build-ca put there.
  "docker build "*) [ ! -f docker/build-ca.crt ] \\
    || printf 'ca=%s\\n' "$(head -n1 docker/build-ca.crt)" >> "$STUB_LOG" ;;
  "docker push "*) printf '%s: digest: sha256:%s size: 529\\n' "${{2##*:}}" "{digest}" ;;
  "aws ecr get-login-password") printf 'ecr-password-from-aws' ;;
  "aws sts get-caller-identity") printf '{account}' ;;
  "aws ecr describe-repositories") [ -n "${{REPO_EXISTS:-}}" ] || exit 254 ;;
esac
"""


def run_script(
    tmp_path: Path, *args: str, **env_extra: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    for name in ("docker", "aws"):
        stub = stubs / name
        stub.write_text(STUB.format(name=name, account=ACCOUNT, digest=DIGEST))
        stub.chmod(0o755)
    log = tmp_path / "calls.log"
    log.write_text("")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "ECR_", "IMAGE_", "REGISTRY", "BASE_IMAGE", "BUILD_CA"))
    }
    env.update(PATH=f"{stubs}:{env['PATH']}", STUB_LOG=str(log), **env_extra)
    # Called from elsewhere on purpose: the script builds from its own folder.
    result = subprocess.run(
        [str(SCRIPT), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result, log.read_text().splitlines()


def test_help_explains_the_options(tmp_path: Path):
    result, calls = run_script(tmp_path, "--help")
    assert result.returncode == 0
    for option in ("--account", "--region", "--repository", "--tag", "AWS_REGION", "IMAGE_TAG"):
        assert option in result.stdout
    assert calls == []


def test_build_login_tag_and_push_to_ecr(tmp_path: Path):
    result, calls = run_script(
        tmp_path, "--region", "eu-west-1", "--tag", "v1.2.3", REPO_EXISTS="1"
    )
    assert result.returncode == 0, result.stderr
    registry = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
    remote = f"{registry}/spool-interview:v1.2.3"
    assert calls[:3] == [
        "docker build --platform linux/amd64 --build-arg WHISPER_MODEL=tiny.en "
        "--tag spool-interview:v1.2.3 .",
        "aws sts get-caller-identity --query Account --output text",
        "aws ecr describe-repositories --region eu-west-1 --repository-names spool-interview",
    ]
    # The two sides of the login pipe start together, so either may log first.
    assert sorted(calls[3:5]) == [
        "aws ecr get-login-password --region eu-west-1",
        f"docker login --username AWS --password-stdin {registry}",
    ]
    assert calls[5:] == [
        "stdin=ecr-password-from-aws",  # the password went through the pipe, not argv
        f"docker tag spool-interview:v1.2.3 {remote}",
        f"docker push {remote}",
    ]
    assert f"IMAGE_URI={remote}" in result.stdout


def test_settings_from_the_environment_and_a_missing_repository(tmp_path: Path):
    env = {
        "AWS_ACCOUNT_ID": "210987654321",
        "AWS_REGION": "us-east-2",
        "ECR_REPOSITORY": "interviews",
        "IMAGE_TAG": "env-tag",
    }
    result, calls = run_script(tmp_path, **env)
    assert result.returncode == 1
    assert "not found in us-east-2 (use --create-repo)" in result.stderr
    assert "docker push" not in "\n".join(calls)

    result, calls = run_script(tmp_path, "--create-repo", **env)
    assert result.returncode == 0, result.stderr
    assert any(c.startswith("aws ecr create-repository --region us-east-2") for c in calls)
    registry = "210987654321.dkr.ecr.us-east-2.amazonaws.com"
    assert calls[-1] == f"docker push {registry}/interviews:env-tag"


def test_the_default_tag_is_the_commit(tmp_path: Path):
    commit = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    result, calls = run_script(tmp_path, "--no-push")
    assert result.returncode == 0, result.stderr
    [build] = calls
    assert f"--tag spool-interview:{commit}" in build  # "-dirty" is added for local changes


@pytest.mark.parametrize(
    ("args", "region", "message"),
    [
        (("--region",), "eu-west-1", "--region needs a value"),
        (("--tag", "bad tag"), "eu-west-1", "not a valid image tag"),
        (("--whisper", "large"), "eu-west-1", "must be tiny.en or base"),
        (("--bogus",), "eu-west-1", "unknown argument: --bogus"),
        (("--tag", "t", "--account", "12"), "eu-west-1", "not a 12-digit AWS account id"),
        (("--tag", "t"), "", "no region"),
        (("--tag", "t", "--registry", "http://r:5000"), "", "not a registry host[:port]"),
        (("--tag", "t", "--repository", "Team/App"), "", "not a valid repository name"),
        (("--tag", "t", "--build-ca", "/nonexistent.crt"), "", "cannot read the CA bundle"),
    ],
)
def test_bad_input_is_refused_before_anything_is_pushed(
    tmp_path: Path, args: tuple[str, ...], region: str, message: str
):
    result, calls = run_script(tmp_path, *args, AWS_REGION=region)
    assert result.returncode == 1
    assert message in result.stderr
    assert not any(c.startswith(("docker push", "docker login")) for c in calls)


def test_push_to_another_registry_logs_in_from_the_environment(tmp_path: Path):
    result, calls = run_script(
        tmp_path,
        "--registry",
        "127.0.0.1:5000",
        "--repository",
        "team/spool",
        "--tag",
        "t1",
        "--base",
        "standin:3.11",
        REGISTRY_USERNAME="ci",
        REGISTRY_PASSWORD="s3cret-pw",
    )
    assert result.returncode == 0, result.stderr
    remote = "127.0.0.1:5000/team/spool:t1"
    assert calls == [
        "docker build --platform linux/amd64 --build-arg WHISPER_MODEL=tiny.en "
        "--build-arg BASE_IMAGE=standin:3.11 --tag team/spool:t1 .",
        "docker login --username ci --password-stdin 127.0.0.1:5000",
        "stdin=s3cret-pw",  # through the pipe, never an argument
        f"docker tag team/spool:t1 {remote}",
        f"docker push {remote}",
    ]
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert f"IMAGE_URI={remote}" in result.stdout
    assert f"IMAGE_DIGEST=sha256:{DIGEST}" in result.stdout.splitlines()


def test_the_build_ca_is_in_the_context_only_while_the_script_runs(tmp_path: Path):
    placed = ROOT / "docker" / "build-ca.crt"
    assert not placed.exists(), "a docker/build-ca.crt of your own: the script refuses it"
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "proxy-ca.crt").write_text("-----BEGIN CERTIFICATE----- proxy\n")
    # A path relative to where the script is called from (run_script calls it from tmp_path).
    args = ("--no-push", "--tag", "t", "--build-ca", "certs/proxy-ca.crt")
    result, calls = run_script(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    assert calls == [
        "docker build --platform linux/amd64 --build-arg WHISPER_MODEL=tiny.en "
        "--tag spool-interview:t .",
        "ca=-----BEGIN CERTIFICATE----- proxy",  # in the context while docker built
    ]
    assert not placed.exists()


def test_a_build_ca_of_your_own_is_never_overwritten(tmp_path: Path):
    placed = ROOT / "docker" / "build-ca.crt"
    assert not placed.exists()
    ca = tmp_path / "proxy-ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE----- proxy\n")
    placed.write_text("mine\n")
    try:
        result, calls = run_script(tmp_path, "--no-push", "--tag", "t", "--build-ca", str(ca))
        assert result.returncode == 1 and "docker/build-ca.crt exists" in result.stderr
        assert calls == [] and placed.read_text() == "mine\n"
    finally:
        placed.unlink()
