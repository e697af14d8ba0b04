"""The weights folder rule: $DEEPFAKE_STREAM_WEIGHTS, else a checkout's weights/, else the user's data folder; the
face models and checkpoints both follow it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import model.weights_dir as weights_dir
import stream.faces.model_files as face_model
from model.weights import CheckpointError, resolve_weights
from model.weights_dir import WEIGHTS_ENV, checkout_weights_dir, default_weights_dir, user_weights_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_checkout(tmp_path, monkeypatch) -> None:
    """Run as an installed package would: no env override, the package's parent folder an empty site folder."""
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.setattr(weights_dir, "PACKAGE_PARENT", site)


def test_a_checkout_uses_its_own_weights_folder(monkeypatch) -> None:
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    assert checkout_weights_dir() == REPO / "weights"
    assert default_weights_dir() == REPO / "weights"


def test_a_checkout_needs_both_pyproject_and_weights(tmp_path) -> None:
    assert checkout_weights_dir(tmp_path) is None
    (tmp_path / "weights").mkdir()
    assert checkout_weights_dir(tmp_path) is None  # a site-packages folder could hold a weights/ of its own
    (tmp_path / "pyproject.toml").write_text("")
    assert checkout_weights_dir(tmp_path) == tmp_path / "weights"


def test_the_environment_comes_first(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "mine"))
    assert default_weights_dir() == tmp_path / "mine"
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(WEIGHTS_ENV, "~/models")
    assert default_weights_dir() == tmp_path / "models"


def test_an_installed_package_uses_the_user_data_folder(tmp_path, monkeypatch, no_checkout) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_weights_dir() == tmp_path / "home" / ".local" / "share" / "deepfake-stream" / "weights"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_weights_dir() == tmp_path / "data" / "deepfake-stream" / "weights"


def test_a_relative_xdg_data_home_is_ignored(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")
    assert user_weights_dir() == tmp_path / ".local" / "share" / "deepfake-stream" / "weights"


def test_face_models_and_checkpoints_follow_the_rule(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv(WEIGHTS_ENV, str(folder))
    content = {name: f"fake {name}".encode() for name in face_model.MODEL_SHA256}
    for name, data in content.items():
        (folder / name).write_bytes(data)
    monkeypatch.setattr(
        face_model, "MODEL_SHA256", {name: hashlib.sha256(data).hexdigest() for name, data in content.items()}
    )
    assert face_model.install_face_models() == {name: folder / name for name in content}  # present: no download
    assert face_model.face_model_path() == folder / face_model.FACE_MODEL_NAME
    assert face_model.short_range_model_path() == folder / face_model.SHORT_RANGE_MODEL_NAME
    (folder / "mine.pt").write_bytes(b"")  # `auto` picks it from the folder, and then refuses it as empty
    with pytest.raises(CheckpointError, match=f"checkpoint {folder / 'mine.pt'} is empty"):
        resolve_weights("auto")
