"""The one rule for where checkpoints and face models live: $DEEPFAKE_STREAM_WEIGHTS, a checkout's weights/, else
the user's data folder (standard library only, so every layer can ask it before anything heavy loads)."""

from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_ENV = "DEEPFAKE_STREAM_WEIGHTS"
APP_FOLDER = "deepfake-stream"
# The folder that holds this package: the repository in a checkout (editable install too), site-packages otherwise.
PACKAGE_PARENT = Path(__file__).resolve().parents[1]


def checkout_weights_dir(package_parent: Path | None = None) -> Path | None:
    """The checkout's weights/ when the package runs from a checkout (the folder holding it, by default
    `PACKAGE_PARENT`, holds pyproject.toml and weights/), else None."""
    parent = package_parent or PACKAGE_PARENT
    weights = parent / "weights"
    return weights if (parent / "pyproject.toml").is_file() and weights.is_dir() else None


def user_weights_dir() -> Path:
    """`$XDG_DATA_HOME/deepfake-stream/weights`, by default `~/.local/share/deepfake-stream/weights`."""
    data_home = os.environ.get("XDG_DATA_HOME", "")
    # The XDG base-directory spec says a relative value is invalid and must be ignored.
    base = Path(data_home) if data_home and Path(data_home).is_absolute() else Path.home() / ".local" / "share"
    return base / APP_FOLDER / "weights"


def default_weights_dir() -> Path:
    """Where checkpoints and face models are looked for and installed, decided at each call (so the environment
    of the moment counts): $DEEPFAKE_STREAM_WEIGHTS, else the checkout's weights/, else `user_weights_dir()`."""
    configured = os.environ.get(WEIGHTS_ENV, "")
    if configured:
        return Path(configured).expanduser()
    return checkout_weights_dir() or user_weights_dir()
