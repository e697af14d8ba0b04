"""The install step's face model: present after `make setup`, verified by sha256, mismatches refused."""

from __future__ import annotations

import zipfile

import pytest

from stream.face_model import (
    FACE_MODEL_NAME,
    FACE_MODEL_SHA256,
    MEMBER,
    FaceModelError,
    _extract_from_wheel,
    face_model_path,
    install_face_model,
    sha256_of,
)


def test_installed_face_model_is_the_pinned_file() -> None:
    assert sha256_of(face_model_path()) == FACE_MODEL_SHA256


def test_a_present_file_with_the_wrong_hash_is_an_error(tmp_path) -> None:
    (tmp_path / FACE_MODEL_NAME).write_bytes(b"not a tflite model")
    with pytest.raises(FaceModelError, match="wrong sha256"):
        install_face_model(tmp_path)


def test_a_wheel_with_a_different_file_is_refused(tmp_path) -> None:
    wheel = tmp_path / "mediapipe-0.10.21-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(MEMBER, b"tampered")
    target = tmp_path / FACE_MODEL_NAME
    with pytest.raises(FaceModelError, match="expected 2c3728e6"):
        _extract_from_wheel(wheel, target)
    assert not target.exists()


def test_missing_model_says_how_to_install(tmp_path) -> None:
    with pytest.raises(FaceModelError, match="make setup"):
        face_model_path(tmp_path)
