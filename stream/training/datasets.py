"""Labelled video sets for `stream.training.prepare`: a folder with `labels.csv`, or a dataset root in its
published layout (FaceForensics++, Celeb-DF v2, DFDC), recognised from its files. Each video gets a label, a group
(videos that must stay on one side of a train/test split: one identity, a fake and its original) and the dataset's
own split."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
LABELS_CSV = "labels.csv"
LAYOUTS = ("labels.csv", "faceforensics++", "celeb-df-v2", "dfdc")
MAX_NAMED = 3


class DatasetError(Exception):
    """A source folder that cannot be read as a labelled set; the message is one line saying what to do."""


@dataclass(frozen=True)
class LabelledVideo:
    path: Path
    file: str  # relative to the dataset root, with forward slashes
    label: str  # REAL | FAKE
    group: str
    split: str = ""  # "" or "test" (the dataset's official test list)


@dataclass(frozen=True)
class Dataset:
    root: Path
    layout: str
    videos: tuple[LabelledVideo, ...]


def _named(items: list[str]) -> str:
    more = f" and {len(items) - MAX_NAMED} more" if len(items) > MAX_NAMED else ""
    return ", ".join(items[:MAX_NAMED]) + more


def _videos_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _finish(root: Path, layout: str, videos: Iterable[LabelledVideo]) -> Dataset:
    videos = tuple(sorted(videos, key=lambda v: v.file))
    if not videos:
        raise DatasetError(f"{root} ({layout}) holds no videos ({', '.join(VIDEO_SUFFIXES)}): nothing to prepare")
    return Dataset(root, layout, videos)


# ---- labels.csv ------------------------------------------------------------------------------------------------
def read_labels_csv(root: Path) -> Dataset:
    """`file,label[,group]` rows (a header row is optional); files relative to `root`; labels REAL or FAKE."""
    path = root / LABELS_CSV
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"cannot read {path}: {error}") from None
    numbered = [(n, [c.strip() for c in row]) for n, row in enumerate(rows, 1) if any(c.strip() for c in row)]
    if numbered and [c.lower() for c in numbered[0][1][:2]] == ["file", "label"]:
        numbered = numbered[1:]
    if not numbered:
        raise DatasetError(f"{path} lists no videos: add rows file,label[,group] (label REAL or FAKE)")
    videos, missing = [], []
    for line, row in numbered:
        if len(row) not in (2, 3) or not row[0]:
            raise DatasetError(f"{path} line {line}: expected file,label[,group], got {','.join(row)!r}")
        label = row[1].upper()
        if label not in ("REAL", "FAKE"):
            raise DatasetError(f"{path} line {line}: label {row[1]!r} is neither REAL nor FAKE")
        video = root / row[0]
        if not video.is_file():
            missing.append(row[0])
            continue
        group = row[2] if len(row) == 3 and row[2] else Path(row[0]).stem
        videos.append(LabelledVideo(video, Path(row[0]).as_posix(), label, group))
    if missing:
        raise DatasetError(
            f"{path} names {len(missing)} missing file(s): {_named(missing)} (paths are relative to {root})"
        )
    return _finish(root, "labels.csv", videos)


# ---- FaceForensics++ ---------------------------------------------------------------------------------------------
class _Groups:
    """Union-find over ids: a fake joins the groups of every source video it was made from."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        self._parent.setdefault(item, item)
        while self._parent[item] != item:
            self._parent[item] = self._parent[self._parent[item]]
            item = self._parent[item]
        return item

    def union(self, items: list[str]) -> None:
        roots = sorted(self.find(i) for i in items)
        for other in roots[1:]:
            self._parent[other] = roots[0]


def _faceforensics_ids(path: Path) -> list[str]:
    """`000.mp4` -> [yt:000]; `000_003.mp4` -> [yt:000, yt:003]; actors `01__scene.mp4`, `01_02__scene__X.mp4`."""
    actors = any(part in ("actors", "DeepFakeDetection") for part in path.parts)
    head = path.stem.split("__")[0]
    namespace = "actor" if actors else "yt"
    return [f"{namespace}:{i}" for i in head.split("_") if i]


def read_faceforensics(root: Path) -> Dataset:
    """`original_sequences/<source>/<compression>/videos` (REAL), `manipulated_sequences/<method>/<compression>/videos`
    (FAKE); a fake and the source videos in its name share a group."""
    entries: list[tuple[Path, str]] = []
    for top, label in (("original_sequences", "REAL"), ("manipulated_sequences", "FAKE")):
        folder = root / top
        if folder.is_dir():
            entries += [(p, label) for p in _videos_under(folder) if p.parent.name == "videos"]
    groups = _Groups()
    for path, _ in entries:
        groups.union(_faceforensics_ids(path))
    videos = [
        LabelledVideo(path, _relative(root, path), label, groups.find(_faceforensics_ids(path)[0]))
        for path, label in entries
    ]
    return _finish(root, "faceforensics++", videos)


# ---- Celeb-DF v2 -------------------------------------------------------------------------------------------------
CELEB_FOLDERS = {"Celeb-real": "REAL", "YouTube-real": "REAL", "Celeb-synthesis": "FAKE"}
CELEB_TEST_LIST = "List_of_testing_videos.txt"


def _celeb_group(folder: str, stem: str) -> str:
    """`id0_0000` and `id0_id16_0000` (id16's face on id0's video) -> id0: a fake stays with the video it was made
    from; YouTube-real videos are their own groups."""
    if folder == "YouTube-real":
        return f"youtube:{stem}"
    return f"celeb:{stem.split('_')[0]}"


def read_celeb_df(root: Path) -> Dataset:
    """`Celeb-real`, `YouTube-real` (REAL), `Celeb-synthesis` (FAKE); `List_of_testing_videos.txt` is the test split."""
    test_files: set[str] = set()
    listing = root / CELEB_TEST_LIST
    if listing.is_file():
        for line in listing.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                test_files.add(parts[1])
    videos = []
    for folder, label in CELEB_FOLDERS.items():
        if not (root / folder).is_dir():
            continue
        for path in _videos_under(root / folder):
            file = _relative(root, path)
            split = "test" if file in test_files else ""
            videos.append(LabelledVideo(path, file, label, _celeb_group(folder, path.stem), split))
    return _finish(root, "celeb-df-v2", videos)


# ---- DFDC --------------------------------------------------------------------------------------------------------
def _dfdc_parts(root: Path) -> list[Path]:
    if (root / "metadata.json").is_file():
        return [root]
    return sorted(p.parent for p in root.glob("*/metadata.json"))


def read_dfdc(root: Path) -> Dataset:
    """`metadata.json` per part (`{"x.mp4": {"label": "FAKE", "original": "y.mp4", ...}}`); a fake joins its
    original's group. Videos named there but absent are skipped (parts are often downloaded in pieces)."""
    videos = []
    for part in _dfdc_parts(root):
        path = part / "metadata.json"
        try:
            metadata = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise DatasetError(f"cannot read {path}: {error}") from None
        if not isinstance(metadata, dict):
            raise DatasetError(f"{path} is not a DFDC metadata.json (a mapping of file -> label)")
        for name, info in sorted(metadata.items()):
            label = str(info.get("label", "")).upper() if isinstance(info, dict) else ""
            if label not in ("REAL", "FAKE"):
                raise DatasetError(f"{path}: {name} has label {label or None!r}, neither REAL nor FAKE")
            video = part / name
            if not video.is_file():
                continue
            original = info.get("original") or name
            videos.append(LabelledVideo(video, _relative(root, video), label, f"dfdc:{Path(original).stem}"))
    return _finish(root, "dfdc", videos)


def find_dataset(source: str | Path) -> Dataset:
    """The labelled videos of `source`: labels.csv first, else the published layout its folders show."""
    root = Path(source)
    if not root.exists():
        raise DatasetError(f"no such folder: {root}")
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder: give a folder holding labels.csv (file,label[,group]) and videos")
    if (root / LABELS_CSV).is_file():
        return read_labels_csv(root)
    if (root / "original_sequences").is_dir() or (root / "manipulated_sequences").is_dir():
        return read_faceforensics(root)
    if any((root / folder).is_dir() for folder in CELEB_FOLDERS):
        return read_celeb_df(root)
    if _dfdc_parts(root):
        return read_dfdc(root)
    raise DatasetError(
        f"{root} is in no known layout: add labels.csv (file,label[,group]), or give a FaceForensics++ root "
        "(original_sequences/, manipulated_sequences/), a Celeb-DF v2 root (Celeb-real/, Celeb-synthesis/) or a "
        "DFDC root (metadata.json per part)"
    )
