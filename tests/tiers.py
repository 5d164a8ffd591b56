"""The test tiers: what a test needs beyond the dev venv, read from its directory, its
parameters and the code it reaches, so `make check` runs the rest without a hand-kept list.

The needs are markers (registered in pyproject.toml); a test with any of them is also `slow`:
- its directory (`DIRECTORIES`): the end-to-end tests, the CDK app (jsii runs Node.js);
- its parameters: the PostgreSQL backend of `database_url` / `api_server`;
- its code: from the test function and every fixture it uses, the search follows our own code
  (tests/, harness/) to the harness's doors in `ENTRY_POINTS` (starting the app, PostgreSQL or
  coturn, speaking with espeak-ng, finding the model files, launching Chromium), and to a
  shell-out (a call with a program of `PROGRAMS` first, in code using `subprocess`/`shutil`);
- its own `@pytest.mark.<need>`, for what none of these can see.
`guarded` then holds every unmarked test to its tier on any machine (tests/conftest.py, in its
setup and call): no model files, and a program of `PROGRAMS` (or the service) refuses to start,
naming the marker to add.
"""

from __future__ import annotations

import ast
import inspect
import os
import sys
import tempfile
import textwrap
import types
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

NEEDS = ("server", "models", "apt", "browser", "node")
SLOW = "slow"  # any of NEEDS: left out of `make check`

TESTS_DIR = Path(__file__).resolve().parent
DIRECTORIES = {TESTS_DIR / "e2e": {"server"}, TESTS_DIR / "cdk": {"node"}}
POSTGRES_BACKEND = "postgresql"
# The harness's doors to what is not in the venv, by qualified name (nothing imported here).
ENTRY_POINTS = {
    "harness.app_server.AppServer": {"server"},
    "harness.postgres.PostgresServer": {"server", "apt"},
    "harness.coturn.CoturnServer": {"server", "apt"},
    "harness.haproxy.HAProxy": {"server", "apt"},
    "harness.speech_audio.speak": {"apt"},  # espeak-ng and sox
    "harness.browser.chromium_executable": {"browser", "apt"},
    # where `make models` put the files
    "interview.speech.model_files.models_dir_from_env": {"models"},
}
# Programs not in the venv: those of the Debian packages `make system-deps` installs
# (scripts/ensure-system-packages.sh; tests/test_tiers.py keeps the two in step), Node.js, and
# the service itself (started by a test, it is a server).
PROGRAMS = {
    **dict.fromkeys(
        ("turnserver", "turnutils_uclient", "initdb", "pg_ctl", "postgres", "psql", "curl",
         "openssl", "espeak-ng", "sox", "strace", "chromium", "haproxy", "dockerd", "docker",
         "docker-registry", "debootstrap", "htpasswd"),
        "apt",
    ),
    **dict.fromkeys(("node", "npm", "npx"), "node"),
    "app.py": "server",
}  # fmt: skip
SHELL_OUT_MODULES = {"subprocess", "shutil"}
# Code followed from a test: our own, not the product's or a library's.
FOLLOWED = ("tests.", "harness.", "conftest")


def needs_of_directory(path: Path) -> set[str]:
    path = path.resolve()
    return {
        need
        for directory, needs in DIRECTORIES.items()
        if path == directory or directory in path.parents
        for need in needs
    }


def needs_of_parameters(params: dict[str, object]) -> set[str]:
    return {"server", "apt"} if POSTGRES_BACKEND in params.values() else set()


def needs_of_code(roots: Iterable[object]) -> set[str]:
    """What the code reached from `roots` (a test function, its fixtures' functions) needs."""
    return {need for root in roots for need in _needs_of_root(root)}


@cache
def _needs_of_root(root: object) -> frozenset[str]:
    found: set[str] = set()
    seen: set[int] = set()
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        entry = ENTRY_POINTS.get(_qualified_name(obj))
        if entry is not None:
            found |= entry
            continue
        for function in _functions_of(obj):
            if obj is not root and not _followed(function):
                continue
            found |= _shell_outs(function)
            todo.extend(o for o in _referenced(function) if _followed(o) or _is_entry(o))
    return frozenset(found)


def _qualified_name(obj: object) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"


def _is_entry(obj: object) -> bool:
    return _qualified_name(obj) in ENTRY_POINTS


def _followed(obj: object) -> bool:
    return (getattr(obj, "__module__", None) or "").startswith(FOLLOWED)


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _code_objects(constant)


def _functions_of(obj: object) -> Iterator[types.FunctionType]:
    """The Python functions behind a function, a fixture, or the methods of a class."""
    if isinstance(obj, type):
        for value in vars(obj).values():
            inner = value.fget if isinstance(value, property) else value
            yield from _functions_of(getattr(inner, "__func__", inner))
        return
    function = inspect.unwrap(obj) if callable(obj) else obj
    if isinstance(function, types.FunctionType):
        yield function


def _names(function: types.FunctionType) -> set[str]:
    return {name for code in _code_objects(function.__code__) for name in code.co_names}


@cache
def _shell_outs(function: types.FunctionType) -> frozenset[str]:
    """The needs of the programs a function starts or looks up by name: a call whose first
    argument is a program of PROGRAMS, or a list starting with one (`subprocess.run(["openssl",
    ...])`, `shutil.which("npm")`), in code that uses `subprocess` or `shutil`."""
    if not _names(function) & SHELL_OUT_MODULES:
        return frozenset()
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, SyntaxError):  # no source to read (made at run time): nothing to see
        return frozenset()
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        first = node.args[0]
        if isinstance(first, ast.List | ast.Tuple) and first.elts:
            first = first.elts[0]
        if isinstance(first, ast.Constant) and first.value in PROGRAMS:
            found.add(PROGRAMS[first.value])
    return frozenset(found)


def _referenced(function: types.FunctionType) -> Iterator[object]:
    """The objects a function's code names: its module's globals, and attributes of the modules
    among them that may lead to an entry point."""
    names = _names(function)
    scope = function.__globals__
    for name in names & scope.keys():
        value = scope[name]
        yield value
        if isinstance(value, types.ModuleType) and _searched(value):
            yield from (getattr(value, attr) for attr in names if hasattr(value, attr))


def _searched(module: types.ModuleType) -> bool:
    name = module.__name__
    return name.startswith(FOLLOWED) or any(e.startswith(f"{name}.") for e in ENTRY_POINTS)


# --- The guard of the unmarked tests.

# Never created: a fresh clone has no models/ before `make models`.
NO_MODELS = Path(tempfile.gettempdir()) / "spool-tests-no-models"
_running_unmarked: list[str] = []  # the nodeid of the unmarked test running now, if any
_SPAWNS = ("subprocess.Popen", "os.exec", "os.posix_spawn")  # audit events: (program, argv, ...)


def _audit(event: str, args: tuple[object, ...]) -> None:
    if not _running_unmarked or event not in _SPAWNS:
        return
    program, argv = args[0], args[1]
    words = [program, *argv] if isinstance(argv, list | tuple) else [program]
    for word in words:
        if not isinstance(word, str | bytes | os.PathLike):
            continue
        need = PROGRAMS.get(Path(os.fsdecode(word)).name)
        if need is not None:
            raise RuntimeError(
                f"{_running_unmarked[0]} runs {os.fsdecode(word)} but is in the fast tier: "
                f"mark it @pytest.mark.{need} (see tests/tiers.py)"
            )


def install_guard() -> None:
    """Once per run: an audit hook cannot be removed, so it checks whether a test is guarded."""
    sys.addaudithook(_audit)


@contextmanager
def guarded(nodeid: str) -> Iterator[None]:
    """While the unmarked test `nodeid` runs: no model files where the product looks for them
    (as in a fresh clone), and the programs of PROGRAMS refuse to start."""
    saved = os.environ.get("MODELS_DIR")
    os.environ["MODELS_DIR"] = str(NO_MODELS)
    _running_unmarked[:] = [nodeid]
    try:
        yield
    finally:
        _running_unmarked.clear()
        if saved is None:
            os.environ.pop("MODELS_DIR", None)
        else:
            os.environ["MODELS_DIR"] = saved
