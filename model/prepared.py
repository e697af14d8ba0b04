"""Prepared training data on disk: one compressed `.npz` of 112x112 BGR face crops per video (one array per
tracked face) and `manifest.json` describing every video (label, group, split, crop geometry).

`stream.training.prepare` writes it with the serving pipeline's crop unit; `model.train` and `model.evaluate` read it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = "deepfake-stream/prepared/1"
MANIFEST_NAME = "manifest.json"
LABELS = ("REAL", "FAKE")
# The crop geometry the live pipeline uses with its default settings (stream.cropping.crop_geometry; a test keeps
# the two equal). model/ imports nothing from stream/, so the number is repeated here.
SERVING_CROP_GEOMETRY = 3
TEST_SPLIT = "test"


class PreparedDataError(Exception):
    """Prepared data that cannot be used; the message is one line saying what to do."""


@dataclass(frozen=True)
class PreparedTrack:
    """One tracked face of one video: how many crops it has (its arrays are in the video's crops file)."""

    track_id: int
    crops: int


@dataclass(frozen=True)
class PreparedVideo:
    file: str  # the video, relative to the source root
    label: str  # REAL | FAKE
    group: str  # videos of one group (one identity, a fake and its original) never fall on both sides of a split
    split: str  # "" (free to split) or "test" (the dataset's official test list)
    crops_file: str  # relative to the prepared folder
    frames_read: int
    tracks: tuple[PreparedTrack, ...]
    truncated: bool = False

    @property
    def is_fake(self) -> bool:
        return self.label == "FAKE"


@dataclass(frozen=True)
class Unreadable:
    file: str
    error: str


@dataclass(frozen=True)
class Manifest:
    root: Path  # the prepared folder
    source: str
    layout: str  # labels.csv | faceforensics++ | celeb-df-v2 | dfdc
    crop_geometry: int
    input_size: int
    channel_order: str
    max_frames: int | None
    videos: tuple[PreparedVideo, ...] = ()
    unreadable: tuple[Unreadable, ...] = ()

    def with_video(self, video: PreparedVideo) -> Manifest:
        kept = tuple(v for v in self.videos if v.file != video.file)
        return replace(
            self, videos=(*kept, video), unreadable=tuple(u for u in self.unreadable if u.file != video.file)
        )

    def with_unreadable(self, item: Unreadable) -> Manifest:
        return replace(self, unreadable=(*(u for u in self.unreadable if u.file != item.file), item))


def manifest_path(folder: str | Path) -> Path:
    return Path(folder) / MANIFEST_NAME


def write_manifest(manifest: Manifest) -> Path:
    """Write atomically (a crash never leaves half a manifest): the resume point of `stream.training.prepare`."""
    document: dict[str, Any] = {"schema": SCHEMA, **asdict(manifest)}
    document.pop("root")
    path = manifest_path(manifest.root)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, indent=1))
    os.replace(temporary, path)
    return path


def _video(item: dict[str, Any]) -> PreparedVideo:
    tracks = tuple(PreparedTrack(int(t["track_id"]), int(t["crops"])) for t in item["tracks"])
    return PreparedVideo(
        file=str(item["file"]),
        label=str(item["label"]),
        group=str(item["group"]),
        split=str(item.get("split", "")),
        crops_file=str(item["crops_file"]),
        frames_read=int(item["frames_read"]),
        tracks=tracks,
        truncated=bool(item.get("truncated", False)),
    )


def read_manifest(folder: str | Path) -> Manifest:
    """The manifest of a prepared folder; PreparedDataError (one line) when it is missing or not ours."""
    folder = Path(folder)
    path = manifest_path(folder)
    if not folder.is_dir():
        raise PreparedDataError(
            f"no such folder: {folder} (make one with: python -m stream.training.prepare SOURCE {folder})"
        )
    if not path.is_file():
        raise PreparedDataError(
            f"{folder} holds no {MANIFEST_NAME}: it is not prepared data (make it with: "
            f"python -m stream.training.prepare SOURCE {folder})"
        )
    try:
        document = json.loads(path.read_text())
        if document.get("schema") != SCHEMA:
            raise PreparedDataError(f"{path} is not a {SCHEMA} manifest (schema {document.get('schema')!r})")
        return Manifest(
            root=folder,
            source=str(document["source"]),
            layout=str(document["layout"]),
            crop_geometry=int(document["crop_geometry"]),
            input_size=int(document["input_size"]),
            channel_order=str(document["channel_order"]),
            max_frames=None if document.get("max_frames") is None else int(document["max_frames"]),
            videos=tuple(_video(item) for item in document["videos"]),
            unreadable=tuple(Unreadable(str(u["file"]), str(u["error"])) for u in document.get("unreadable", [])),
        )
    except PreparedDataError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise PreparedDataError(
            f"{path} is damaged ({type(error).__name__}: {error}): prepare the data again"
        ) from None


def track_key(track_id: int) -> str:
    return f"track_{track_id}"


def save_crops(path: Path, tracks: dict[int, np.ndarray]) -> None:
    """Each track's crops [N, S, S, 3] uint8 BGR, zlib-compressed, written atomically."""
    temporary = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(temporary, **{track_key(track_id): crops for track_id, crops in tracks.items()})
    os.replace(temporary, path)


def load_crops(manifest: Manifest, video: PreparedVideo) -> dict[int, np.ndarray]:
    """The video's crops by track id, [N, S, S, 3] uint8 BGR."""
    path = manifest.root / video.crops_file
    try:
        with np.load(path, allow_pickle=False) as content:
            return {t.track_id: content[track_key(t.track_id)] for t in video.tracks}
    except (OSError, KeyError, ValueError) as error:
        raise PreparedDataError(f"crops of {video.file} ({path}) cannot be read ({error}): prepare again") from None
