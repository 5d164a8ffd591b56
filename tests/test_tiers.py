"""The test tiers (tests/tiers.py): what marks a test as needing more than the dev venv, and the
guard that holds an unmarked test to it."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from harness.app_server import AppServer
from harness.speech_audio import speak
from tests import conftest, test_turn_credentials, tiers
from tests.turn import test_turnserver_conf
from tests.web import test_client

ROOT = Path(__file__).resolve().parents[1]


def _resolve(qualified: str) -> object:
    parts = qualified.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for name in parts[split:]:
            found = getattr(found, name)
        return found
    raise ModuleNotFoundError(qualified)


def test_every_entry_point_exists():
    # A harness or product rename must not quietly move tests into the fast tier.
    for qualified in tiers.ENTRY_POINTS:
        assert tiers._qualified_name(_resolve(qualified)) == qualified


def test_the_guarded_programs_are_those_of_make_system_deps():
    script = (ROOT / "scripts" / "ensure-system-packages.sh").read_text()
    script = script.split("if [ ${#missing[@]} -eq 0 ]")[0]  # the checks, not the install
    programs = set(re.findall(r"command -v ([\w-]+)", script))
    programs |= set(re.findall(r"\[ -x /usr/bin/([\w-]+) \]", script))
    programs |= set(re.findall(r'compgen -G "/usr/lib/postgresql/\*/bin/([\w-]+)"', script))
    assert {"espeak-ng", "sox", "turnserver", "initdb", "chromium"} <= programs
    assert programs <= {p for p, need in tiers.PROGRAMS.items() if need == "apt"}


def _starts_the_app(tmp_path: Path) -> None:
    AppServer(tmp_path / "log", {}).start()


def _through_a_helper(tmp_path: Path) -> None:
    _starts_the_app(tmp_path)


def _speaks() -> None:
    speak("hello")


def _writes_a_stand_in(directory: Path) -> None:
    (directory / "turnserver").write_text("#!/bin/sh\n")
    subprocess.run(["sh", "-c", "true"], check=True)


def needs(module: ModuleType, name: str) -> set[str]:
    """What `module.name` needs. Looked up by name, so that this file, which only reads that
    code, is not marked with what it needs."""
    return tiers.needs_of_code([vars(module)[name]])


def test_code_is_followed_to_the_harness_entry_points():
    this = sys.modules[__name__]
    assert needs(this, "_through_a_helper") == {"server"}
    assert needs(this, "_speaks") == {"apt"}
    assert needs(conftest, "api_server") == {"server"}
    assert needs(conftest, "postgres_server") == {"server", "apt"}
    # SQLite or PostgreSQL is the parameter's to say, not the fixture's.
    assert needs(conftest, "database_url") == set()
    assert tiers.needs_of_parameters({"database_url": "postgresql"}) == {"server", "apt"}
    assert tiers.needs_of_parameters({"database_url": "sqlite"}) == set()


def test_a_program_run_by_name_is_a_need_and_a_file_of_that_name_is_not():
    assert needs(test_turn_credentials, "openssl_hmac_sha1_b64") == {"apt"}
    assert needs(test_client, "test_the_typescript_client_unit_tests_pass") == {"node"}
    assert needs(sys.modules[__name__], "_writes_a_stand_in") == set()
    # The compose entrypoint's tests run it with a stand-in `turnserver`: fast.
    assert needs(test_turnserver_conf, "rendered") == set()


def test_directories():
    assert tiers.needs_of_directory(ROOT / "tests" / "e2e" / "test_voice.py") == {"server"}
    assert tiers.needs_of_directory(ROOT / "tests" / "cdk") == {"node"}
    assert tiers.needs_of_directory(ROOT / "tests" / "test_tiers.py") == set()


# Out of the test's code, which would otherwise be marked for naming them in a call.
REFUSED = [
    (["openssl", "version"], r"runs openssl .* @pytest\.mark\.apt"),
    (["/usr/bin/npm", "test"], r"runs /usr/bin/npm .* @pytest\.mark\.node"),
    ([sys.executable, "app.py"], r"runs app\.py .* @pytest\.mark\.server"),
]


def test_an_unmarked_test_finds_no_models_and_may_not_start_what_it_did_not_declare():
    # This test is unmarked itself: it runs guarded.
    assert os.environ["MODELS_DIR"] == str(tiers.NO_MODELS)
    assert not tiers.NO_MODELS.exists()
    for argv, refusal in REFUSED:
        with pytest.raises(RuntimeError, match=refusal):
            subprocess.run(argv, cwd=ROOT, check=False)
    # What the dev venv holds runs.
    assert subprocess.run([sys.executable, "-c", "pass"], check=False).returncode == 0


def test_a_marked_test_is_not_guarded():
    # Marked apt for naming openssl in a call, without a decorator.
    assert os.environ.get("MODELS_DIR") != str(tiers.NO_MODELS)
    assert subprocess.run(["openssl", "version"], capture_output=True, check=False).returncode == 0
