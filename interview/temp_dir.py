"""Temporary files go where the service may write: $TMPDIR, made if it is missing.

The image runs with a read-only root file system and only data/ writable (README: "The
image"), so it sets TMPDIR=/app/data/tmp; a fresh volume or an ECS mount does not have that
folder yet. Python's tempfile (and Gradio, fastrtc and the speech stack through it) would
otherwise find no usable directory and fail. The `interview` package imports this module
before anything asks tempfile for its directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def ensure_temp_dir() -> Path | None:
    """Make $TMPDIR (private to the service's user) when it is set and missing."""
    configured = os.environ.get("TMPDIR")
    if not configured:
        return None
    path = Path(configured)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


ensure_temp_dir()
