"""The cameras a cluster of detectors runs (`python -m stream.cluster cameras.yaml`), read from YAML and checked,
each mistake one line naming the entry.

    detector:              # optional: what each detector actor asks Ray for, and how many cameras it takes
      num_cpus: 2          # CPU cores per detector (default 1)
      num_gpus: 0          # GPUs per detector (default 0; 1 with one GPU per detector)
      max_cameras: 4       # the most cameras one detector runs (default 4)
      count: null          # detector actors; null: one per num_gpus GPUs when num_gpus > 0, else per num_cpus CPUs
    cameras:
      - name: lobby        # 1-64 of A-Z a-z 0-9 _ . - ; the stream id its scores are stored under
        source: rtsp://user@cam1.local/stream   # anything run_stream.py takes as a SOURCE
      - {name: door, source: rtsp://cam2.local/stream}

A plain list of cameras is the same as `cameras:` alone. The file is read again when it changes while the cluster
runs: cameras added, removed or given another source take effect within a second; `detector:` only at start.
Sources are not opened here (a file or webcam exists on the detector's machine, not necessarily on this one):
a source a detector cannot open shows as `failed` in the cluster's status, with the reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from stream.capture.references import redact

CAMERA_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class CameraListError(ValueError):
    """A cameras file that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class Camera:
    name: str
    source: str  # as written, credentials included: it goes only to the detector that opens it

    @property
    def display(self) -> str:
        """The source without credentials, for logs and the store."""
        return redact(self.source)


@dataclass(frozen=True)
class DetectorResources:
    """What one detector actor asks Ray for, how many cameras it runs, and how many actors there are."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_cameras: int = 4
    count: int | None = None

    def __post_init__(self) -> None:
        for name in ("num_cpus", "num_gpus"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be 0 or more, got {value}")
        if self.num_cpus == 0 and self.num_gpus == 0:
            raise ValueError("a detector needs num_cpus or num_gpus above 0 (Ray places it by them)")
        if self.max_cameras < 1:
            raise ValueError(f"max_cameras must be at least 1, got {self.max_cameras}")
        if self.count is not None and self.count < 1:
            raise ValueError(f"count must be at least 1 or null, got {self.count}")

    def actors_for(self, cluster_cpus: float, cluster_gpus: float) -> int:
        """How many detectors: `count`, else as many as the cluster's GPUs (or CPUs) hold, at least one."""
        if self.count is not None:
            return self.count
        if self.num_gpus > 0:
            return max(1, int(cluster_gpus // self.num_gpus))
        return max(1, int(cluster_cpus // self.num_cpus))


@dataclass(frozen=True)
class CameraPlan:
    cameras: tuple[Camera, ...]
    detector: DetectorResources

    def sources(self) -> dict[str, str]:
        return {camera.name: camera.source for camera in self.cameras}


_RESOURCE_TYPES: dict[str, tuple[type, ...]] = {
    "num_cpus": (int, float),
    "num_gpus": (int, float),
    "max_cameras": (int,),
    "count": (int, type(None)),
}


def _detector(origin: str, values: Any) -> DetectorResources:
    if values is None:
        return DetectorResources()
    if not isinstance(values, Mapping):
        raise CameraListError(f"{origin}: detector must be a mapping of {', '.join(_RESOURCE_TYPES)}")
    known = [f.name for f in fields(DetectorResources)]
    for key, value in values.items():
        if key not in known:
            raise CameraListError(f"{origin}: unknown key detector.{key} (valid: {', '.join(known)})")
        if isinstance(value, bool) or not isinstance(value, _RESOURCE_TYPES[key]):
            raise CameraListError(f"{origin}: detector.{key} must be a number, got {value!r}")
    try:
        return DetectorResources(**values)
    except ValueError as error:
        raise CameraListError(f"{origin}: detector: {error}") from None


def _camera(origin: str, index: int, entry: Any) -> Camera:
    where = f"{origin}: cameras[{index}]"
    if not isinstance(entry, Mapping):
        raise CameraListError(f"{where} must be a mapping with name and source, got {entry!r}")
    extra = sorted(set(map(str, entry)) - {"name", "source"})
    if extra:
        raise CameraListError(f"{where}: unknown key {extra[0]} (a camera has name and source)")
    name, source = entry.get("name"), entry.get("source")
    if not isinstance(name, str) or not CAMERA_NAME.match(name):
        raise CameraListError(f"{where}: name must be 1-64 of A-Z a-z 0-9 _ . -, got {name!r}")
    if isinstance(source, int) and not isinstance(source, bool):
        source = str(source)  # a webcam index
    if not isinstance(source, str) or not source.strip():
        raise CameraListError(
            f"{where} ({name}): source must be a source reference (rtsp://…, a file, 0), got {source!r}"
        )
    return Camera(name, source.strip())


def parse_cameras(data: Any, origin: str) -> CameraPlan:
    """A plan from parsed YAML: a mapping with `cameras` (and maybe `detector`), or a plain list of cameras."""
    if isinstance(data, list):
        data = {"cameras": data}
    if not isinstance(data, Mapping):
        raise CameraListError(f"{origin}: must be a list of cameras or a mapping with cameras:, got {data!r}")
    unknown = sorted(set(map(str, data)) - {"cameras", "detector"})
    if unknown:
        raise CameraListError(f"{origin}: unknown section {unknown[0]} (valid: cameras, detector)")
    entries = data.get("cameras") or []
    if not isinstance(entries, list):
        raise CameraListError(f"{origin}: cameras must be a list of {{name, source}} entries")
    cameras = tuple(_camera(origin, i, entry) for i, entry in enumerate(entries))
    seen: set[str] = set()
    for camera in cameras:
        if camera.name in seen:
            raise CameraListError(f"{origin}: camera name {camera.name} is listed twice (names must be unique)")
        seen.add(camera.name)
    return CameraPlan(cameras, _detector(origin, data.get("detector")))


def load_cameras(path: Path) -> CameraPlan:
    """The plan in the YAML file at `path`; CameraListError (one line) when it cannot be read or used."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise CameraListError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        where = "" if mark is None else f" (line {mark.line + 1}, column {mark.column + 1})"
        raise CameraListError(f"{path} is not valid YAML: {problem}{where}") from None
    return parse_cameras(data if data is not None else [], str(path))
