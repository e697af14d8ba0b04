"""Clips for training and evaluation from prepared data: windows of consecutive crops of one tracked face, and
the split of a manifest's videos by group, so no identity (and no fake with its original) is on both sides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model.prepared import TEST_SPLIT, Manifest, PreparedDataError, PreparedVideo, load_crops


@dataclass(frozen=True)
class ClipRef:
    """`window` crops of one track of one video, from crop `start`; `synthetic`: a self-blended FAKE of it."""

    video: int  # index into manifest.videos
    track_id: int
    start: int
    window: int
    fake: bool
    group: str
    synthetic: bool = False


@dataclass(frozen=True)
class Split:
    train: tuple[int, ...]  # video indices
    val: tuple[int, ...]
    test: tuple[int, ...]  # the dataset's official test videos: never trained on

    def groups(self, manifest: Manifest, part: str) -> set[str]:
        return {manifest.videos[i].group for i in getattr(self, part)}


def split_by_group(manifest: Manifest, val_fraction: float, seed: int) -> Split:
    """Whole groups go to validation (about `val_fraction` of them, with both labels when the data allows)."""
    videos = manifest.videos
    test = tuple(i for i, v in enumerate(videos) if v.split == TEST_SPLIT)
    free = [i for i, v in enumerate(videos) if v.split != TEST_SPLIT]
    groups = sorted({videos[i].group for i in free})
    rng = np.random.default_rng(seed)
    order = [groups[i] for i in rng.permutation(len(groups))]
    wanted = (
        0 if len(groups) < 2 or val_fraction <= 0 else min(max(1, round(val_fraction * len(groups))), len(groups) - 1)
    )
    labels_of = {g: {videos[i].label for i in free if videos[i].group == g} for g in groups}
    val: list[str] = []
    for label in ("FAKE", "REAL"):  # first a group with each label, then any
        pick = next((g for g in order if label in labels_of[g] and g not in val), None)
        if pick is not None and len(val) < wanted:
            val.append(pick)
    val += [g for g in order if g not in val][: max(0, wanted - len(val))]
    chosen = set(val)
    return Split(
        train=tuple(i for i in free if videos[i].group not in chosen),
        val=tuple(i for i in free if videos[i].group in chosen),
        test=test,
    )


def clip_refs(manifest: Manifest, indices: Sequence[int], window: int, stride: int) -> list[ClipRef]:
    """Every window of `window` consecutive crops, `stride` apart, of every track of the given videos."""
    refs = []
    for index in indices:
        video: PreparedVideo = manifest.videos[index]
        for track in video.tracks:
            for start in range(0, track.crops - window + 1, stride):
                refs.append(ClipRef(index, track.track_id, start, window, video.is_fake, video.group))
    return refs


def longest_track(manifest: Manifest, indices: Sequence[int] | None = None) -> int:
    chosen = range(len(manifest.videos)) if indices is None else indices
    return max((t.crops for i in chosen for t in manifest.videos[i].tracks), default=0)


class CropCache:
    """Loads each video's crops once (they are small: tens of crops per video at --max-frames)."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self._videos: dict[int, dict[int, np.ndarray]] = {}

    def track(self, video: int, track_id: int) -> np.ndarray:
        if video not in self._videos:
            self._videos[video] = load_crops(self.manifest, self.manifest.videos[video])
        crops = self._videos[video].get(track_id)
        if crops is None:
            raise PreparedDataError(f"{self.manifest.videos[video].file} has no track {track_id}: prepare again")
        return crops

    def clip(self, ref: ClipRef) -> np.ndarray:
        """[window, S, S, 3] uint8 BGR."""
        return self.track(ref.video, ref.track_id)[ref.start : ref.start + ref.window]
