"""Tiny labelled video sets made in the test (nothing downloaded): REAL clips of the astronaut's face moving, and
FAKE clips that are the same scenes with the face's inner region swapped for a warped, re-coloured copy of itself
blended in with a soft mask (a self-blended image, as in the SBI paper). Plus empty trees in each published
dataset layout (FaceForensics++, Celeb-DF v2, DFDC) holding a few of those clips."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from stream.capture.demo import background, head_patch, paste
from tests.media import write_video

Scene = Callable[[int], np.ndarray]
SIZE = (256, 192)  # width, height: small, so MediaPipe and the encoder stay quick


def forged(patch: np.ndarray) -> np.ndarray:
    """The head patch with its inner face replaced by a shifted, scaled, re-coloured copy, blended softly."""
    h, w = patch.shape[:2]
    moved = cv2.warpAffine(
        patch, np.float32([[1.06, 0, -0.03 * w], [0, 1.06, -0.01 * h]]), (w, h), borderMode=cv2.BORDER_REFLECT
    )
    recoloured = np.clip(moved.astype(np.float32) * np.float32([0.75, 0.95, 1.3]) + 12, 0, 255)
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (w // 2, int(h * 0.5)), (int(w * 0.2), int(h * 0.25)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(w, h) * 0.04)[:, :, None]
    return (recoloured * mask + patch.astype(np.float32) * (1 - mask)).astype(np.uint8)


def moving_face(clip: int, fake: bool) -> Scene:
    """Clip `clip`'s face (its own size, start and motion), forged or not. Clips 0-5 cross the frame left to right;
    later clips start elsewhere and every other six walk right to left, so no two clips are the same scene."""
    scale = 0.5 + 0.05 * (clip % 3)
    head = head_patch(flip=bool(clip % 2), scale=scale)
    head = forged(head) if fake else head
    slot, round_ = clip % 6, clip // 6
    speed, dy = 2 + clip % 3, (clip % 2) - 0.5
    if round_ == 0:
        x0, y0, dx = 20 + 15 * slot, 10 + 4 * slot, speed
    elif round_ % 2:
        x0, y0, dx = 150 - 10 * slot, 25 + 5 * slot + round_, -speed
    else:
        x0, y0, dx = 10 + 12 * slot, 28 + 4 * slot + round_, speed

    def frame(i: int) -> np.ndarray:
        canvas = background(*SIZE).copy()
        paste(canvas, head, int(x0 + dx * i), int(y0 + dy * i))
        return canvas

    return frame


def write_clip(path: Path, clip: int, fake: bool, frames: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    scene = moving_face(clip, fake)
    return write_video(path, (scene(i) for i in range(frames)))


def labelled_set(folder: Path, clips: int = 4, frames: int = 16, first: int = 0) -> Path:
    """`clips` REAL videos and their FAKE versions (clip numbers from `first`), with labels.csv grouping each fake with
    its original."""
    rows = ["file,label,group"]
    for clip in range(first, first + clips):
        write_clip(folder / f"real_{clip}.mp4", clip, False, frames)
        write_clip(folder / f"fake_{clip}.mp4", clip, True, frames)
        rows += [f"real_{clip}.mp4,REAL,person{clip}", f"fake_{clip}.mp4,FAKE,person{clip}"]
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def faceforensics_tree(root: Path, frames: int = 12) -> Path:
    write_clip(root / "original_sequences/youtube/c23/videos/000.mp4", 0, False, frames)
    write_clip(root / "original_sequences/youtube/c23/videos/003.mp4", 1, False, frames)
    write_clip(root / "original_sequences/youtube/c23/videos/010.mp4", 2, False, frames)
    write_clip(root / "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4", 0, True, frames)
    write_clip(root / "manipulated_sequences/FaceSwap/c23/videos/003_000.mp4", 1, True, frames)
    return root


def celeb_df_tree(root: Path, frames: int = 12) -> Path:
    write_clip(root / "Celeb-real/id0_0000.mp4", 0, False, frames)
    write_clip(root / "Celeb-real/id1_0000.mp4", 1, False, frames)
    write_clip(root / "YouTube-real/00170.mp4", 2, False, frames)
    write_clip(root / "Celeb-synthesis/id0_id1_0000.mp4", 0, True, frames)
    write_clip(root / "Celeb-synthesis/id1_id0_0000.mp4", 1, True, frames)
    (root / "List_of_testing_videos.txt").write_text("1 Celeb-real/id1_0000.mp4\n0 Celeb-synthesis/id1_id0_0000.mp4\n")
    return root


def dfdc_tree(root: Path, frames: int = 12) -> Path:
    part = root / "dfdc_train_part_0"
    write_clip(part / "aaa.mp4", 0, False, frames)
    write_clip(part / "bbb.mp4", 0, True, frames)
    write_clip(part / "ccc.mp4", 1, False, frames)
    metadata = {
        "aaa.mp4": {"label": "REAL", "split": "train"},
        "bbb.mp4": {"label": "FAKE", "split": "train", "original": "aaa.mp4"},
        "ccc.mp4": {"label": "REAL", "split": "train"},
        "zzz.mp4": {"label": "FAKE", "split": "train", "original": "ccc.mp4"},  # listed, not downloaded
    }
    (part / "metadata.json").write_text(json.dumps(metadata))
    return root
