"""Which videos an evaluation may score: those outside the groups the checkpoint trained on, and enough of each label
for a calibrated threshold to mean something."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from model.prepared import LABELS, Manifest

MIN_CALIBRATION_VIDEOS = 5  # per label: fewer, and one video moves the threshold


class EvaluationError(Exception):
    """An evaluation that cannot be made; one line saying what to do."""


@dataclass(frozen=True)
class HeldOut:
    videos: tuple[int, ...]  # manifest indices to score
    left_out: int  # videos of groups the checkpoint trained on, not scored
    overlap: str  # "none" (training groups left out) | "included" (--include-training-groups) | "unknown"
    note: str  # one line for stderr: what was left out, or why overlap is unknown


def training_groups(metrics: Mapping[str, Any]) -> set[str] | None:
    """The groups a checkpoint of ours recorded as trained on; None when it records none (the original six)."""
    training = metrics.get("training")
    groups = training.get("groups") if isinstance(training, Mapping) else None
    trained = groups.get("train") if isinstance(groups, Mapping) else None
    if not isinstance(trained, Sequence) or isinstance(trained, str):
        return None
    return {str(group) for group in trained}


def held_out(manifest: Manifest, videos: Sequence[int], metrics: Mapping[str, Any], include_trained: bool) -> HeldOut:
    """`videos` without those in the checkpoint's training groups (unless `include_trained`), and what was done."""
    trained = training_groups(metrics)
    if trained is None:
        return HeldOut(
            tuple(videos),
            0,
            "unknown",
            "warning: this checkpoint records no training groups (such as the original six): whether these videos "
            "overlap its training data is unknown, so the AUC may be optimistic",
        )
    seen = [i for i in videos if manifest.videos[i].group in trained]
    if include_trained:
        note = (
            f"warning: {len(seen)} of {len(videos)} videos are in groups this checkpoint trained on and are scored "
            "anyway (--include-training-groups): the AUC and any threshold are optimistic"
        )
        return HeldOut(tuple(videos), 0, "included", note)
    kept = tuple(i for i in videos if manifest.videos[i].group not in trained)
    if not kept:
        raise EvaluationError(
            f"all {len(videos)} chosen videos of {manifest.root} are in groups this checkpoint trained on: evaluate "
            "on a second prepared folder (docs/training.md) or pass --include-training-groups"
        )
    note = f"left out {len(seen)} of {len(videos)} videos: their groups trained this checkpoint"
    return HeldOut(kept, len(seen), "none", note)


def videos_per_label(manifest: Manifest, videos: Sequence[int], window: int) -> dict[str, int]:
    """How many of `videos` have a face track of at least `window` crops (so get scored), per label."""
    counts = dict.fromkeys(LABELS, 0)
    for index in videos:
        video = manifest.videos[index]
        if any(track.crops >= window for track in video.tracks):
            counts[video.label] += 1
    return counts


def calibration_size_check(counts: Mapping[str, int], allow_few: bool) -> str | None:
    """Raise when a threshold would rest on fewer than MIN_CALIBRATION_VIDEOS videos of a label; with `allow_few`,
    the warning line instead (None when there are enough)."""
    few = {label: n for label, n in counts.items() if n < MIN_CALIBRATION_VIDEOS}
    if not few:
        return None
    counted = " and ".join(f"{counts[label]} {label}" for label in LABELS)
    if allow_few:
        return (
            f"warning: calibrating on {counted} held-out videos (fewer than {MIN_CALIBRATION_VIDEOS} of each): "
            "the threshold may not hold on new videos"
        )
    raise EvaluationError(
        f"refusing to calibrate on {counted} held-out videos: at least {MIN_CALIBRATION_VIDEOS} of each are needed "
        "for a threshold to mean anything; add held-out videos (a second prepared folder, docs/training.md) or pass "
        "--allow-few-videos"
    )
