"""A compose file's service run with `docker run`, as `docker compose up` would run it.

No Compose implementation from the registries runs turn/docker-compose.turn.yml: Debian's
docker-compose 1.29 does not know `secrets: {environment: ...}` and Compose v2 is not packaged.
So the service's keys are translated one by one to `docker run` options, with compose's own
semantics (variables interpolated from the given environment only, bind mounts relative to the
file's folder, an environment secret as a read-only file at /run/secrets/<name>, the entrypoint's
first word as --entrypoint). A key this module does not know fails the run instead of being
dropped, so a change to the compose file cannot go untested.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:\?|:-)([^}]*))?\}")
DURATION = re.compile(r"^(\d+)s$")


class ComposeError(ValueError):
    pass


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """docker compose's ${NAME}, ${NAME:?message} and ${NAME:-default}, from `env` only."""

    def one(match: re.Match[str]) -> str:
        name, op, rest = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":-":
            return rest
        raise KeyError(f"{name} is required: {rest}")

    return VARIABLE.sub(one, value)


def load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def run_args(
    compose_file: Path,
    service_name: str,
    env: Mapping[str, str],
    secrets_dir: Path,
    replace_mounts: Mapping[str, Path] | None = None,
) -> tuple[list[str], str, list[str]]:
    """(`docker run` options, image, arguments after the image) for the service.

    `replace_mounts` maps a container path to the host file mounted there instead of the one
    the file names (a test's own config); environment secrets are written into `secrets_dir`.
    """
    document = load(compose_file)
    service = dict(document["services"][service_name])
    replace = dict(replace_mounts or {})
    options: list[str] = []
    image = interpolate(service.pop("image"), env)
    entrypoint: list[str] = []
    command: list[str] = []
    for key, value in service.items():
        if key == "network_mode":
            options += ["--network", interpolate(value, env)]
        elif key == "restart":
            options += ["--restart", value]
        elif key == "volumes":
            for volume in value:
                source, target, *mode = interpolate(volume, env).split(":")
                host = replace.pop(target, None) or _host_path(compose_file, source)
                options += ["--volume", ":".join([str(host), target, *mode])]
        elif key == "secrets":
            for name in value:
                declared = document["secrets"][name]
                if set(declared) != {"environment"}:
                    raise ComposeError(f"secret {name}: only environment secrets are run here")
                secret = secrets_dir / name
                secret.write_text(env.get(declared["environment"], ""))
                secret.chmod(0o444)  # compose's default mode for a secret's file
                options += ["--volume", f"{secret}:/run/secrets/{name}:ro"]
        elif key == "tmpfs":
            for mount in value:
                options += ["--tmpfs", mount]
        elif key == "entrypoint":
            entrypoint = [interpolate(part, env) for part in value]
        elif key == "command":
            command = [interpolate(part, env) for part in value]
        elif key == "stop_grace_period":
            seconds = DURATION.match(value)
            if seconds is None:
                raise ComposeError(f"stop_grace_period {value!r}: only whole seconds here")
            options += ["--stop-timeout", seconds.group(1)]
        elif key == "logging":
            options += ["--log-driver", value["driver"]]
            for option, setting in value.get("options", {}).items():
                options += ["--log-opt", f"{option}={setting}"]
        else:
            raise ComposeError(f"{service_name}: the key {key!r} is not translated")
    if replace:
        raise ComposeError(f"nothing is mounted at {sorted(replace)}")
    if entrypoint:
        options += ["--entrypoint", entrypoint[0]]
    return options, image, [*entrypoint[1:], *command]


def _host_path(compose_file: Path, source: str) -> Path:
    if not source.startswith(("/", "./", "../")):
        raise ComposeError(f"{source!r}: named volumes are not run here")
    return (compose_file.parent / source).resolve()
