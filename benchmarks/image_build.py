"""What building the image costs (`make bench`): a cold build next to the rebuilds a developer
makes, in one run on one Docker engine.

From a copy of the checkout (harness.docker.checkout_copy), on the base docker/standin-base.sh
gives (the official one where Docker Hub can be reached): a cold build (`--no-cache`: the venv,
the models from PyPI and npm, `npm ci`, everything), the baseline; then a rebuild with nothing
changed, and a rebuild after a code change (a line added to app.py), both from the cache. The
image's size is the built one's. About 3-4 minutes here.

Writes benchmarks/results/image_build.json and the table in benchmarks/README.md.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.tables import row
from benchmarks.voice_bench import publish
from harness.docker import Engine, base_image, checkout_copy, docker, image_size

HERE = Path(__file__).resolve().parent
RESULTS_PATH = HERE / "results" / "image_build.json"
BEGIN_MARK, END_MARK = "<!-- image_build:begin -->", "<!-- image_build:end -->"
TAG = "spool-interview-bench:image-build"


def timed_build(context: Path, base: str, *options: str) -> float:
    began = time.monotonic()
    docker("build", *options, "--build-arg", f"BASE_IMAGE={base}", "--tag", TAG, str(context),
           timeout=3600)  # fmt: skip
    return time.monotonic() - began


def table(result: dict[str, Any]) -> str:
    lines = [
        f"On `{result['base']}`, one engine, in this order:",
        "",
        "| Build | seconds |",
        "|---|---|",
        row("cold, `--no-cache` (baseline)", result["cold_seconds"]),
        row("again, nothing changed", result["unchanged_seconds"]),
        row("after a code change (app.py)", result["code_change_seconds"]),
        "",
        f"Image size: {result['size_bytes'] / 1e9:.2f} GB (the tests' limit: 2.3 GB).",
    ]
    return "\n".join(lines)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-image-") as tmp:
        engine = Engine.ensure(Path(tmp))
        try:
            base = base_image()
            context = checkout_copy(Path(tmp) / "context")
            cold = timed_build(context, base, "--no-cache")
            unchanged = timed_build(context, base)
            with (context / "app.py").open("a") as app:
                app.write("\n# a code change\n")
            code_change = timed_build(context, base)
            result = {
                "base": base,
                "cold_seconds": round(cold, 1),
                "unchanged_seconds": round(unchanged, 1),
                "code_change_seconds": round(code_change, 1),
                "size_bytes": image_size(TAG),
            }
            docker("rmi", TAG, check=False)
        finally:
            engine.close()
    print(json.dumps(result, indent=2))
    publish(RESULTS_PATH, json.dumps(result, indent=2) + "\n", table(result), BEGIN_MARK, END_MARK)


if __name__ == "__main__":
    main()
