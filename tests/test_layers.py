"""The layers are checked, not hoped for: every import of the project (module level and inside functions) goes down
the layer order of DESIGN.md, siblings of one layer stay apart, there is no import cycle, the dashboard imports only
the bottom layer and the store, and the light modules load nothing heavy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast  # make test-fast

ROOT = Path(__file__).resolve().parent.parent

# Bottom to top. A module may import its own package and anything in a lower layer; packages on one layer are
# siblings and may not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("model",),
    ("stream.records",),  # the bottom layer: records first, then the timers and settings that name them
    ("stream.timing", "stream.network", "stream.text", "stream.config"),
    ("stream.capture", "stream.faces", "stream.store"),
    ("stream.sinks",),
    ("stream.loop",),
    ("stream.detector",),
    ("stream.service", "stream.cluster", "stream.training"),
    ("stream.preflight",),  # what run_stream.py checks before the model loads: sources, store, the service's port
    ("dashboard",),  # run_stream.py starts it as a child process (dashboard.launch); it never imports run_stream
    ("run_stream",),
)
# Within the bottom layer the settings may use the network names and the one-line error text. Nothing else.
ALLOWED_SIBLINGS = {("stream.config", "stream.network"), ("stream.config", "stream.text")}
DASHBOARD_MAY_IMPORT = ("stream.records", "stream.config", "stream.network", "stream.store", "model.labels")
HEAVY = ("torch", "av", "cv2", "mediapipe", "onnxruntime", "openvino")
LIGHT = (
    "stream.config",
    "stream.text",
    "stream.records",
    "stream.timing",
    "stream.network",
    "model.labels",
    "stream.store",
    "stream.preflight",  # it runs before the model loads: nothing heavy may come with it
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    files = [ROOT / "run_stream.py", *sorted((ROOT / "stream").rglob("*.py")), *sorted((ROOT / "model").rglob("*.py"))]
    files += sorted((ROOT / "dashboard").rglob("*.py"))
    return {module_name(path): path for path in files}


def imports_of(path: Path, name: str) -> set[str]:
    """Every project module `path` imports, at module level or inside a function (TYPE_CHECKING ones included)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from stream.loop import pipeline`
    modules = project_modules()
    return {m for m in found if m in modules and m != name}


def layer_of(name: str) -> tuple[int, str]:
    for index, layer in enumerate(LAYERS):
        for unit in layer:
            if name == unit or name.startswith(f"{unit}."):
                return index, unit
    raise AssertionError(f"{name} belongs to no layer: add it to LAYERS in tests/test_layers.py and DESIGN.md")


def test_every_import_goes_down_the_layers() -> None:
    problems = []
    for name, path in project_modules().items():
        if name in ("stream", "model", "dashboard"):
            continue
        level, unit = layer_of(name)
        for imported in imports_of(path, name):
            if imported in ("stream", "model", "dashboard"):
                continue
            other_level, other_unit = layer_of(imported)
            if other_unit == unit or other_level < level or (unit, other_unit) in ALLOWED_SIBLINGS:
                continue
            where = "a sibling" if other_level == level else "a higher layer"
            problems.append(f"{name} imports {imported} ({where}: {other_unit})")
    assert not problems, "\n".join(problems)


def test_there_is_no_import_cycle() -> None:
    modules = project_modules()
    graph = {name: imports_of(path, name) for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for imported in sorted(graph[name]):
            if state.get(imported) == 1:
                return [*path[path.index(imported) :], imported] if imported in path else [name, imported]
            if imported not in state and (cycle := visit(imported, [*path, imported])):
                return cycle
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            cycle = visit(name, [name])
            assert cycle is None, " -> ".join(cycle)


def test_the_dashboard_imports_only_the_bottom_layer_and_the_store() -> None:
    for name, path in project_modules().items():
        if name.split(".")[0] != "dashboard":
            continue
        for imported in imports_of(path, name):
            allowed = imported.startswith("dashboard") or any(
                imported == top or imported.startswith(f"{top}.") for top in DASHBOARD_MAY_IMPORT
            )
            assert allowed, f"{name} imports {imported}"


@pytest.mark.parametrize("module", LIGHT)
def test_light_modules_load_nothing_heavy(module: str) -> None:
    check = f"import sys, {module}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"import {module} loaded {done.stdout.strip()}"


def test_the_top_level_of_stream_stays_small_and_every_module_short() -> None:
    top = [p.name for p in (ROOT / "stream").glob("*.py")]
    assert len(top) <= 8, top
    long = [
        f"{path.relative_to(ROOT)}: {n}"
        for path in project_modules().values()
        if (n := len(path.read_text().splitlines())) > 500
    ]
    assert not long, long
