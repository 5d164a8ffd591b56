"""interview/temp_dir.py: $TMPDIR is made when missing, so tempfile works on a read-only root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from interview.temp_dir import ensure_temp_dir

ROOT = Path(__file__).resolve().parents[1]


def test_a_missing_tmpdir_is_made_private(tmp_path: Path, monkeypatch):
    target = tmp_path / "data" / "tmp"
    monkeypatch.setenv("TMPDIR", str(target))
    assert ensure_temp_dir() == target
    assert target.is_dir() and (target.stat().st_mode & 0o777) == 0o700
    assert ensure_temp_dir() == target  # and again: already there


def test_without_tmpdir_nothing_is_made(monkeypatch):
    monkeypatch.delenv("TMPDIR", raising=False)
    assert ensure_temp_dir() is None


def test_importing_the_package_is_enough_for_tempfile(tmp_path: Path):
    target = tmp_path / "fresh" / "tmp"
    code = "import interview, tempfile; print(tempfile.gettempdir())"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == str(target)
