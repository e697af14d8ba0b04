"""The package as `pip install` makes it: a wheel built from the tracked tree holds every module and data file, and
installed into a fresh virtual environment it imports, finds its config and answers `--help` without the checkout
or the editable install in sight."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from model.weights_dir import WEIGHTS_ENV
from stream.config import DEFAULT_CONFIG

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("stream", "model", "dashboard")
PAGE_SCRIPTS = {"dashboard.app"}  # importing a Streamlit page script runs the page
PACKAGED_CONFIG = "stream/config/default.yaml"
PUBLISH_PAGES = "stream/service/static/"
TIMEOUT_S = 240

# Run inside the installed environment: import the given modules, then report where everything came from.
CHECK_SCRIPT = """
import importlib, json, sys
from pathlib import Path

site_dir, checkout, deps, names, report = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3]), \\
    json.loads(sys.argv[4]), Path(sys.argv[5])
for name in names:
    importlib.import_module(name)
from model.weights_dir import default_weights_dir
from stream.config import DEFAULT_CONFIG, Settings, load_settings
from stream.faces.model_files import FaceModelError, face_model_path
from stream.service.whip import PAGE

def within(file, folder):
    return Path(file).resolve().is_relative_to(Path(folder).resolve())

files = {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())}
try:
    face_model_path()
    missing_face_model = ""
except FaceModelError as error:
    missing_face_model = str(error)
report.write_text(json.dumps({
    "ours_elsewhere": {n: f for n, f in files.items() if n.split(".")[0] in ("stream", "model", "dashboard",
        "run_stream") and not (f and within(f, site_dir))},
    "from_checkout": sorted(n for n, f in files.items() if f and within(f, checkout)
        and not any(within(f, d) for d in deps)),
    "default_config": str(DEFAULT_CONFIG),
    "config_is_the_defaults": load_settings(DEFAULT_CONFIG) == Settings(),
    "publish_page": str(PAGE) if PAGE.is_file() else "",
    "weights_dir": str(default_weights_dir()),
    "missing_face_model": missing_face_model,
}))
"""


@dataclass(frozen=True)
class Installed:
    tracked: list[str]
    wheel: Path
    venv: Path
    site_dir: Path
    work: Path  # an empty folder outside the checkout, the installed commands' working directory
    env: dict[str, str]


def _run(command: list[str | Path], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    shown = " ".join(str(part)[:60] for part in command)
    assert result.returncode == 0, f"`{shown}` failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def _tracked_files() -> list[str]:
    """The tree as git sees it: tracked files (with their working-tree changes) and untracked ones not ignored."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the wheel test builds from the tracked files")
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode != 0:
        pytest.skip(f"{REPO} is not a git checkout: {listed.stderr.strip()}")
    # A tracked file deleted in the working tree is no longer part of the tree.
    return sorted(name for name in listed.stdout.split("\0") if name and os.path.lexists(REPO / name))


def _module_name(path: str) -> str:
    parts = Path(path).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _dist_info(wheel: Path) -> str:
    name, version = wheel.name.split("-")[:2]
    return f"{name}-{version}.dist-info"


def _tracked_modules(tracked: list[str]) -> list[str]:
    return [path for path in tracked if path.endswith(".py") and path.split("/")[0] in PACKAGES]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tracked = _tracked_files()
    tmp = tmp_path_factory.mktemp("wheel")
    # Build from a copy: an in-place build writes build/ and *.egg-info into the checkout (racing any other run),
    # and a stale build/lib can slip a deleted module into the wheel. Symlinks are copied as links, as git has them.
    source = tmp / "source"
    for name in tracked:
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target, follow_symlinks=False)
    # No PYTHONPATH (tests run with the checkout on it), no weights folder and no pip settings (PIP_TARGET, PIP_USER)
    # of the caller's: the install must stand alone. XDG_DATA_HOME shows where its user weights folder goes.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "PIP_", WEIGHTS_ENV))}
    env |= {"XDG_DATA_HOME": str(tmp / "xdg"), "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    pip = [sys.executable, "-m", "pip"]
    dist = tmp / "dist"
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", dist, source], env, tmp)
    (wheel,) = dist.glob("deepfake_stream-*.whl")
    # A fresh venv without the project: its site-packages gets the wheel, and one .pth line adds the folder this
    # interpreter's dependencies live in. Python reads .pth files only in site folders, so the editable install's
    # finder (a .pth there) never runs.
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], env, tmp)
    python = venv / "bin" / "python"
    site_dir = Path(
        _run([python, "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env, tmp).stdout.strip()
    )
    deps = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site_dir / "deepfake_stream_test_deps.pth").write_text("".join(f"{folder}\n" for folder in deps))
    _run([*pip, "--python", python, "install", "--no-deps", "--no-index", "-q", wheel], env, tmp)
    work = tmp / "work"
    work.mkdir()
    return Installed(tracked, wheel, venv, site_dir, work, env)


def test_the_wheel_holds_every_module_and_data_file(installed: Installed) -> None:
    expected = [*_tracked_modules(installed.tracked), "run_stream.py", PACKAGED_CONFIG]
    expected += [path for path in installed.tracked if path.startswith(PUBLISH_PAGES)]
    with zipfile.ZipFile(installed.wheel) as archive:
        members = set(archive.namelist())
        assert [path for path in expected if path not in members] == []
        assert archive.read(PACKAGED_CONFIG) == (REPO / "configs" / "default.yaml").read_bytes()
    tops = {member.split("/")[0] for member in members}
    assert tops - {*PACKAGES, "run_stream.py"} == {_dist_info(installed.wheel)}  # no tests/, bench/, weights/


def test_the_installed_package_imports_from_its_own_folder(installed: Installed) -> None:
    names = [_module_name(path) for path in _tracked_modules(installed.tracked)]
    names = [name for name in names if name not in PAGE_SCRIPTS]
    deps = list(dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib")))
    report_path = installed.work.parent / "report.json"
    python = installed.venv / "bin" / "python"
    arguments = [installed.site_dir, REPO, json.dumps(deps), json.dumps(names), report_path]
    _run([python, "-I", "-c", CHECK_SCRIPT, *arguments], installed.env, installed.work)
    report = json.loads(report_path.read_text())
    assert report["ours_elsewhere"] == {}
    assert report["from_checkout"] == []
    assert report["default_config"] == str(installed.site_dir / PACKAGED_CONFIG)
    assert report["config_is_the_defaults"]
    assert report["publish_page"].startswith(str(installed.site_dir))
    user_weights = installed.work.parent / "xdg" / "deepfake-stream" / "weights"
    assert report["weights_dir"] == str(user_weights)
    assert str(user_weights) in report["missing_face_model"]


def test_the_installed_commands_answer_help(installed: Installed) -> None:
    python = installed.venv / "bin" / "python"
    by_module = _run([python, "-m", "run_stream", "--help"], installed.env, installed.work)
    script = _run([installed.venv / "bin" / "deepfake-stream", "--help"], installed.env, installed.work)
    assert by_module.stdout.startswith("usage:") and "--weights" in by_module.stdout
    assert script.stdout == by_module.stdout


def test_the_checkout_reads_its_own_config() -> None:
    assert DEFAULT_CONFIG == REPO / "configs" / "default.yaml"
    # What the wheel ships in its place: the same file (a symlink to it in the repository).
    assert (REPO / PACKAGED_CONFIG).read_bytes() == DEFAULT_CONFIG.read_bytes()
