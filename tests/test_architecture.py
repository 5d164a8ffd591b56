"""One door per framework: outside its adapter, no module imports fastrtc, aiortc, aioice or a
Gradio internal.

Walks app.py, interview/ and ui/ with `ast`, every import included (inside functions and
TYPE_CHECKING blocks too, and `importlib.import_module("...")` of a literal name):
- fastrtc, aiortc and aioice are imported only by interview/voice/rtc.py (the fastrtc adapter)
  and ui/gradio_host.py (the Gradio adapter, which owns fastrtc's Gradio component);
- outside ui/gradio_host.py gradio is imported only as `import gradio as gr` and used through its
  public names: its classes and constants (`gr.Blocks`, `gr.Error`, `gr.Request`, ...), the
  `gr.themes` namespace and the helper functions gradio's documentation lists (PUBLIC_FUNCTIONS);
  never a submodule (`gr.routes`, `gr.components.base`, ...).
"""

from __future__ import annotations

import ast
import os
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RTC_PACKAGES = {"fastrtc", "aiortc", "aioice"}
RTC_ADAPTERS = {"interview/voice/rtc.py", "ui/gradio_host.py"}
GRADIO_ADAPTER = "ui/gradio_host.py"
# gradio's public namespaces and helper functions, as its documentation lists them (gradio.app
# docs, "Helpers" and "Themes"); mount_gradio_app and close_all are left to the adapter.
PUBLIC_NAMESPACES = {"themes"}
PUBLIC_FUNCTIONS = {
    "on",
    "render",
    "update",
    "skip",
    "load",
    "load_chat",
    "set_static_paths",
    "api",
    "validate",
}


def checked_modules() -> dict[str, str]:
    """The source of app.py and of every module under interview/ and ui/, by relative path."""
    paths = [ROOT / "app.py"]
    for top in ("interview", "ui"):
        for directory, subdirectories, files in os.walk(ROOT / top):
            subdirectories[:] = [d for d in subdirectories if d not in ("node_modules", "dist")]
            paths += [Path(directory) / f for f in files if f.endswith(".py")]
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in sorted(paths)}


def imported_names(tree: ast.AST) -> list[tuple[int, str, str]]:
    """(line, module imported, how) for every import of the tree."""
    found: list[tuple[int, str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                how = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
                found.append((node.lineno, alias.name, how))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = ", ".join(alias.name for alias in node.names)
            found.append((node.lineno, node.module, f"from {node.module} import {names}"))
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and ast.unparse(node.func) in ("importlib.import_module", "import_module", "__import__")
        ):
            name = node.args[0].value
            found.append((node.lineno, name, f"{ast.unparse(node.func)}({name!r})"))
    return sorted(found)


def rtc_imports(path: str, source: str) -> list[str]:
    """Where the module imports fastrtc, aiortc or aioice (unless it is an adapter)."""
    if path in RTC_ADAPTERS:
        return []
    return [
        f"{path}:{line}: {how}"
        for line, module, how in imported_names(ast.parse(source))
        if module.split(".")[0] in RTC_PACKAGES
    ]


def gradio_internals(path: str, source: str) -> list[str]:
    """Where the module reaches past gradio's public API (unless it is the Gradio adapter)."""
    if path == GRADIO_ADAPTER:
        return []
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    aliases: set[str] = set()
    for line, module, how in imported_names(tree):
        if module.split(".")[0] != "gradio":
            continue
        if how == "import gradio as gr":
            aliases.add("gr")
        else:
            found.append((line, f"{how} (only `import gradio as gr` outside gradio_host)"))
    public = PUBLIC_NAMESPACES | PUBLIC_FUNCTIONS
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and not node.attr[0].isupper()
            and node.attr not in public
        ):
            found.append((node.lineno, f"gr.{node.attr} (not public gradio API)"))
    return [f"{path}:{line}: {what}" for line, what in sorted(found)]


def test_only_the_adapters_import_fastrtc_aiortc_or_aioice() -> None:
    offenders: dict[str, list[str]] = defaultdict(list)
    for path, source in checked_modules().items():
        for where in rtc_imports(path, source):
            offenders[path].append(where)
    assert dict(offenders) == {}, (
        "fastrtc, aiortc and aioice are for interview/voice/rtc.py and ui/gradio_host.py only: "
        f"{dict(offenders)}"
    )


def test_gradio_is_used_through_its_public_api_outside_gradio_host() -> None:
    modules = checked_modules()
    found = [where for path, source in modules.items() for where in gradio_internals(path, source)]
    assert found == [], "Gradio internals belong in ui/gradio_host.py:\n" + "\n".join(found)
    # The walk sees the modules that use gradio (a walk of nothing would pass too).
    assert "import gradio as gr" in modules["ui/gradio_app.py"]
    assert GRADIO_ADAPTER in modules


def test_the_checks_find_what_they_forbid() -> None:
    internals = """
import gradio as gr
from gradio.components.base import server
import gradio.routes
import gradio
def later():
    from fastrtc import WebRTC
    import importlib
    importlib.import_module("gradio.routes")
theme = gr.themes.Base()
gr.skip()
raise gr.Error("public")
gr.routes.App
gr.components.base.server
"""
    assert gradio_internals("ui/other.py", internals) == [
        "ui/other.py:3: from gradio.components.base import server "
        "(only `import gradio as gr` outside gradio_host)",
        "ui/other.py:4: import gradio.routes (only `import gradio as gr` outside gradio_host)",
        "ui/other.py:5: import gradio (only `import gradio as gr` outside gradio_host)",
        "ui/other.py:9: importlib.import_module('gradio.routes') "
        "(only `import gradio as gr` outside gradio_host)",
        "ui/other.py:13: gr.routes (not public gradio API)",
        "ui/other.py:14: gr.components (not public gradio API)",
    ]
    assert gradio_internals(GRADIO_ADAPTER, internals) == []
    assert rtc_imports("ui/other.py", internals) == ["ui/other.py:7: from fastrtc import WebRTC"]
    assert rtc_imports("interview/x.py", "import aiortc.rtcconfiguration\nimport aioice") == [
        "interview/x.py:1: import aiortc.rtcconfiguration",
        "interview/x.py:2: import aioice",
    ]
    assert rtc_imports("interview/voice/rtc.py", "import fastrtc") == []
