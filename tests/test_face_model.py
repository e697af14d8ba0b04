"""The install step's face models: both present after `make setup`, verified by sha256, taken from one download
of the pinned wheel, mismatches refused. Nothing here downloads: the wheel is a fake one made in a temp dir."""

from __future__ import annotations

import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

import stream.faces.model_files as face_model
from stream.faces.model_files import (
    FACE_MODEL_NAME,
    FACE_MODEL_SHA256,
    MEMBER,
    SHORT_RANGE_MEMBER,
    SHORT_RANGE_MODEL_NAME,
    SHORT_RANGE_MODEL_SHA256,
    FaceModelError,
    _extract_from_wheel,
    face_model_path,
    install_face_models,
    sha256_of,
    short_range_model_path,
)

FAKE_CONTENT = {FACE_MODEL_NAME: b"fake full-range model", SHORT_RANGE_MODEL_NAME: b"fake short-range model"}
MEMBERS = {FACE_MODEL_NAME: MEMBER, SHORT_RANGE_MODEL_NAME: SHORT_RANGE_MEMBER}


def _make_wheel(path: Path, names=tuple(FAKE_CONTENT)) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(MEMBERS[name], FAKE_CONTENT[name])
    return path


@pytest.fixture
def fake_registry(monkeypatch) -> list[list[str]]:
    """Expect the fake models' hashes and answer `pip download` with a fake wheel; returns the commands run."""
    monkeypatch.setattr(
        face_model, "MODEL_SHA256", {name: hashlib.sha256(data).hexdigest() for name, data in FAKE_CONTENT.items()}
    )
    calls: list[list[str]] = []

    def fake_run(command, **kwargs):
        calls.append(command)
        dest = Path(command[command.index("--dest") + 1])
        _make_wheel(dest / "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(face_model.subprocess, "run", fake_run)
    return calls


def test_installed_face_models_are_the_pinned_files() -> None:
    assert sha256_of(face_model_path()) == FACE_MODEL_SHA256
    assert sha256_of(short_range_model_path()) == SHORT_RANGE_MODEL_SHA256
    assert face_model_path(name=SHORT_RANGE_MODEL_NAME) == short_range_model_path()


def test_both_missing_are_extracted_from_one_download(tmp_path, fake_registry) -> None:
    paths = install_face_models(tmp_path)
    assert len(fake_registry) == 1
    assert "--no-deps" in fake_registry[0] and "mediapipe==0.10.21" in fake_registry[0]
    assert {name: path.read_bytes() for name, path in paths.items()} == FAKE_CONTENT
    assert not list(tmp_path.glob("*.part"))
    install_face_models(tmp_path)  # all present and verified: no second download
    assert len(fake_registry) == 1


def test_only_the_missing_model_is_extracted(tmp_path, fake_registry) -> None:
    full = tmp_path / FACE_MODEL_NAME
    full.write_bytes(FAKE_CONTENT[FACE_MODEL_NAME])
    before = full.stat().st_mtime_ns
    install_face_models(tmp_path)
    assert len(fake_registry) == 1
    assert (tmp_path / SHORT_RANGE_MODEL_NAME).read_bytes() == FAKE_CONTENT[SHORT_RANGE_MODEL_NAME]
    assert full.stat().st_mtime_ns == before


@pytest.mark.parametrize("name", [FACE_MODEL_NAME, SHORT_RANGE_MODEL_NAME])
def test_a_present_file_with_the_wrong_hash_is_an_error(tmp_path, name) -> None:
    (tmp_path / name).write_bytes(b"not a tflite model")
    with pytest.raises(FaceModelError, match="wrong sha256"):
        install_face_models(tmp_path)


def test_a_wheel_with_a_different_file_is_refused(tmp_path) -> None:
    wheel = tmp_path / "mediapipe-0.10.21-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(MEMBER, b"tampered")
        archive.writestr(SHORT_RANGE_MEMBER, b"tampered")
    target = tmp_path / FACE_MODEL_NAME
    with pytest.raises(FaceModelError, match="expected 2c3728e6"):
        _extract_from_wheel(wheel, target)
    short = tmp_path / SHORT_RANGE_MODEL_NAME
    with pytest.raises(FaceModelError, match="expected bbff11ce"):
        _extract_from_wheel(wheel, short)
    assert not target.exists() and not short.exists()


def test_a_wheel_missing_one_model_writes_neither(tmp_path, fake_registry) -> None:
    wheel = _make_wheel(tmp_path / "mediapipe-0.10.21-py3-none-any.whl", names=(FACE_MODEL_NAME,))
    weights = tmp_path / "weights"
    weights.mkdir()
    with pytest.raises(FaceModelError, match=f"does not contain {SHORT_RANGE_MEMBER}"):
        _extract_from_wheel(wheel, weights / FACE_MODEL_NAME, weights / SHORT_RANGE_MODEL_NAME)
    assert not list(weights.iterdir())


def test_a_failed_download_says_so(tmp_path, monkeypatch) -> None:
    def failing_run(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(face_model.subprocess, "run", failing_run)
    with pytest.raises(FaceModelError, match=r"could not download mediapipe==0\.10\.21.*No matching distribution"):
        install_face_models(tmp_path)


def test_missing_models_say_how_to_install(tmp_path) -> None:
    with pytest.raises(FaceModelError, match="make setup"):
        face_model_path(tmp_path)
    with pytest.raises(FaceModelError, match="make setup"):
        short_range_model_path(tmp_path)
    with pytest.raises(ValueError, match="unknown face model"):
        face_model_path(tmp_path, "other.tflite")
