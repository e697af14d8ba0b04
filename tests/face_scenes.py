"""Made videos with ground truth for the detect → track → crop unit, and the identity metrics measured on them.

Each scene is drawn in memory from `skimage.data.astronaut()`'s head (nothing is downloaded, no file is written):
per frame, the BGR image and the faces drawn in it as (true face id, tight face box). Frames are rendered on
demand (`Scene.frames()`), so a 4K scene does not hold a gigabyte of frames at once.

`measure(scene, cropper)` feeds a scene through a cropper (anything with `crops(frame) -> crops`, each crop with
`.track.track_id` and `.track.box`) and scores one person = one face id: recall, ids per true face, false tracks,
and windows scored against the ideal. `measure_settings(scene, overrides)` builds the unit from dotted setting
overrides (`{"faces.min_score": 0.3}`), measures it and closes it. tests/test_identity.py gates on these numbers;
bench/faces.py prints them with the unit's cost per frame.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

import cv2
import numpy as np
from skimage import data

from stream.capture.demo import ASTRONAUT_HEAD_PATCH, background, head_patch, paste
from stream.faces.tracker import iou_matrix
from stream.records import Frame

Box = tuple[float, float, float, float]

# The astronaut's tight (dlib-like) face box in the 512x512 picture: brows to chin, cheek to cheek. This is the box
# the unit reports for her face when it is large and clear: the median over 36 placements of 96–192 px faces at
# 640x480 and 1280x720 (full-range detector + the seed BoxMapping; spread 3–5 px; the mirrored head agrees within
# 3 px). stream.demo.ASTRONAUT_FACE_BOX is the whole head with the hair, not this box.
ASTRONAUT_TIGHT_FACE_BOX: Box = (177.0, 75.0, 273.0, 170.0)
TIGHT_FACE_WIDTH = ASTRONAUT_TIGHT_FACE_BOX[2] - ASTRONAUT_TIGHT_FACE_BOX[0]  # 96 px at head_patch(scale=1)

WINDOW = 10  # frames per scored window, for the windows-vs-ideal count
ALLOWANCE = 10  # frames a new face may take to be found before recall counts it
MIN_IOU = 0.3  # a crop covers a true face at this IoU or more


@dataclass(frozen=True)
class TrueFace:
    """One face drawn in one frame: its identity in the scene and its tight box in frame pixels."""

    face_id: int
    box: Box


class Head:
    """The astronaut's head scaled so that her tight face box is `face_width` px wide (optionally mirrored)."""

    def __init__(self, face_width: float, flip: bool = False) -> None:
        if not 8 <= face_width <= 2000:
            raise ValueError(f"face_width must be 8..2000 px, got {face_width}")
        self.patch = head_patch(flip=flip, scale=face_width / TIGHT_FACE_WIDTH)
        px1, py1, px2, py2 = ASTRONAUT_HEAD_PATCH
        fx1, fy1, fx2, fy2 = ASTRONAUT_TIGHT_FACE_BOX
        left, right = fx1 - px1, fx2 - px1
        if flip:
            left, right = (px2 - px1) - right, (px2 - px1) - left
        sx, sy = self.patch.shape[1] / (px2 - px1), self.patch.shape[0] / (py2 - py1)
        self._face = (left * sx, (fy1 - py1) * sy, right * sx, (fy2 - py1) * sy)

    def face_box(self, x: int, y: int) -> Box:
        """The tight face box when the patch's top-left corner is pasted at (x, y)."""
        fx1, fy1, fx2, fy2 = self._face
        return (x + fx1, y + fy1, x + fx2, y + fy2)


# Where a head is in frame i: the patch's top-left corner, or None while it is out of the picture.
Route = Callable[[int], tuple[int, int] | None]


@dataclass(frozen=True)
class Scene:
    """A made video: `render(i)` draws frame i (HxWx3 uint8 BGR); `truth[i]` lists the faces drawn in it."""

    name: str
    width: int
    height: int
    truth: tuple[tuple[TrueFace, ...], ...]
    render: Callable[[int], np.ndarray]
    fps: float = 30.0

    def __len__(self) -> int:
        return len(self.truth)

    def frames(self) -> Iterator[np.ndarray]:
        return (self.render(i) for i in range(len(self)))

    def face_ids(self) -> list[int]:
        return sorted({face.face_id for faces in self.truth for face in faces})


def _noise(width: int, height: int, sigma: float, count: int = 3, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` fixed sensor-noise fields as (add, subtract) uint8 pairs, so that noise costs two saturating ops."""
    rng = np.random.default_rng(seed)
    fields = []
    for _ in range(count):
        noise = np.rint(rng.normal(0.0, sigma, (height, width, 3))).astype(np.int16)
        fields.append((np.clip(noise, 0, 255).astype(np.uint8), np.clip(-noise, 0, 255).astype(np.uint8)))
    return fields


def compose(
    name: str,
    base: np.ndarray | Callable[[int], np.ndarray],
    heads: Sequence[tuple[Head, Route]],
    frames: int,
    noise_sigma: float = 2.0,
) -> Scene:
    """A scene of `heads` moving along their paths over `base` (a frame, or frame index -> frame), with light
    sensor noise that changes every frame (a still camera's frames are never identical). Face ids are the heads'
    1-based positions in `heads`; a face counts as drawn only while its whole tight box is inside the frame."""
    first = base(0) if callable(base) else base
    height, width = first.shape[:2]
    truth = []
    for i in range(frames):
        faces = []
        for face_id, (head, path) in enumerate(heads, start=1):
            at = path(i)
            if at is None:
                continue
            box = head.face_box(*at)
            if box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height:
                faces.append(TrueFace(face_id, box))
        truth.append(tuple(faces))
    noise = _noise(width, height, noise_sigma) if noise_sigma > 0 else []

    def render(i: int) -> np.ndarray:
        canvas = (base(i) if callable(base) else base).copy()
        for head, path in heads:
            at = path(i)
            if at is not None:
                paste(canvas, head.patch, *at)
        if noise:
            plus, minus = noise[i % len(noise)]
            cv2.add(canvas, plus, dst=canvas)
            cv2.subtract(canvas, minus, dst=canvas)
        return canvas

    return Scene(name, width, height, tuple(truth), render)


def _still(x: int, y: int) -> Route:
    return lambda i: (x, y)


def _moving(x: int, y: int, dx: float, dy: float = 0.0) -> Route:
    return lambda i: (round(x + dx * i), round(y + dy * i))


def _swaying(x: int, y: int, amplitude: float, period: float, phase: float = 0.0) -> Route:
    """A person in a video call: small side-to-side and up-and-down movement."""

    def at(i: int) -> tuple[int, int]:
        angle = 2 * math.pi * i / period + phase
        return round(x + amplitude * math.sin(angle)), round(y + 0.5 * amplitude * math.sin(2 * angle))

    return at


# ---- the scenes -------------------------------------------------------------------------------------------------


def one_face_480p(frames: int = 60) -> Scene:
    """The common case: one ~100 px face drifting across a 640x480 frame."""
    head = Head(100)
    return compose("one_face_480p", background(640, 480), [(head, _moving(150, 80, 2.0, 0.5))], frames)


def distant_face_1080p(frames: int = 60, face_width: int = 80) -> Scene:
    """A person a few metres from a 1080p camera: one ~80 px face moving 3 px per frame."""
    head = Head(face_width)
    return compose(
        f"distant_{face_width}px_1080p", background(1920, 1080), [(head, _moving(700, 420, 3.0, 0.4))], frames
    )


def still_face_720p(face_width: int, frames: int = 60) -> Scene:
    """One still face of `face_width` px in a 1280x720 frame (only the sensor noise changes)."""
    head = Head(face_width)
    x = 640 - head.patch.shape[1] // 2
    y = 360 - head.patch.shape[0] // 2
    return compose(f"still_{face_width}px_720p", background(1280, 720), [(head, _still(x, y))], frames)


def crossing_720p(frames: int = 60) -> Scene:
    """Two faces (100 and 90 px, one mirrored) passing each other at 4 px per frame each, in a 1280x720 frame.
    The lower head's hair just touches the upper face's chin as they pass; neither face is covered."""
    upper, lower = Head(100), Head(90, flip=True)
    below = round(0.85 * upper.patch.shape[0])  # the upper face's chin is this far below its patch's top
    return compose(
        "crossing_720p",
        background(1280, 720),
        [(upper, _moving(330, 90, 4.0)), (lower, _moving(790, 90 + below, -4.0))],
        frames,
    )


def _tinted_tile(width: int, height: int, tint: tuple[float, float, float]) -> np.ndarray:
    tile = background(width, height).astype(np.float32) * np.array(tint, np.float32)
    return np.clip(tile, 0, 255).astype(np.uint8)


def call_grid_720p(frames: int = 60, face_width: int = 90) -> Scene:
    """A video call captured from the screen: a 2x2 grid of 640x360 tiles at 1280x720, one ~90 px face per tile,
    each person swaying a little, tiles on different backgrounds with a dark border between them."""
    tints = [(1.0, 1.0, 1.0), (0.8, 1.0, 1.2), (1.2, 1.0, 0.8), (0.9, 0.9, 0.9)]
    canvas = np.full((720, 1280, 3), 20, np.uint8)
    heads: list[tuple[Head, Route]] = []
    for index, tint in enumerate(tints):
        row, col = divmod(index, 2)
        canvas[row * 360 + 2 : row * 360 + 358, col * 640 + 2 : col * 640 + 638] = _tinted_tile(636, 356, tint)
        head = Head(face_width + 6 * (index % 2), flip=index in (1, 2))
        x = col * 640 + 320 - head.patch.shape[1] // 2 + 30 * (index - 1.5)
        y = row * 360 + 180 - head.patch.shape[0] // 2 + 20
        heads.append((head, _swaying(round(x), round(y), 4 + index, 40 + 7 * index, phase=index)))
    return compose("call_grid_720p", canvas, heads, frames)


@cache
def _texture_plate() -> np.ndarray:
    """A busy collage of skimage's non-face pictures (coffee, rocket, stained tissue, deep field, grass, bricks, gravel,
    text), 2400x1400 BGR: edges, blobs and text everywhere, and no face. No animal either (chelsea is a cat)."""
    grey = [data.grass(), data.brick(), data.text(), data.gravel()]
    colour = [data.coffee(), data.rocket(), data.immunohistochemistry(), data.hubble_deep_field()]
    pictures = [p[:, :, ::-1] for p in colour] + [cv2.cvtColor(g, cv2.COLOR_GRAY2BGR) for g in grey]
    plate = np.zeros((1400, 2400, 3), np.uint8)
    tile_w, tile_h = 600, 700
    for index in range(8):
        row, col = divmod(index, 4)
        picture = cv2.resize(pictures[(index * 3) % len(pictures)], (tile_w, tile_h), interpolation=cv2.INTER_AREA)
        plate[row * tile_h : (row + 1) * tile_h, col * tile_w : (col + 1) * tile_w] = picture
    return plate


def busy_no_face_1080p(frames: int = 40) -> Scene:
    """No face at all: a busy textured 1920x1080 background panning 4 px per frame (any track here is false)."""
    plate = _texture_plate()

    def base(i: int) -> np.ndarray:
        x, y = 4 * i, 2 * i
        return plate[y : y + 1080, x : x + 1920]

    return compose("busy_no_face_1080p", base, [], frames)


def three_faces_4k(frames: int = 90) -> Scene:
    """People across a room seen by a 4K camera: faces of 85, 110 and 135 px, moving 1-3 px per frame (90 frames:
    finding a face by tiles takes up to ~36 frames at 4K)."""
    heads = [
        (Head(85), _moving(600, 900, 3.0)),
        (Head(110, flip=True), _moving(1800, 1200, -3.0, 1.0)),
        (Head(135), _moving(2800, 700, 2.0, -1.0)),
    ]
    return compose("three_faces_4k", background(3840, 2160), heads, frames)


# The quality gate's scenes, common case first; the benchmark adds the slow ones (4K).
GATE_SCENES: dict[str, Callable[[], Scene]] = {
    "one_face_480p": one_face_480p,
    "distant_80px_1080p": distant_face_1080p,
    "still_40px_720p": lambda: still_face_720p(40),
    "still_60px_720p": lambda: still_face_720p(60),
    "still_100px_720p": lambda: still_face_720p(100),
    "still_200px_720p": lambda: still_face_720p(200),
    "crossing_720p": crossing_720p,
    "call_grid_720p": call_grid_720p,
    "busy_no_face_1080p": busy_no_face_1080p,
}
BENCH_SCENES: dict[str, Callable[[], Scene]] = {**GATE_SCENES, "three_faces_4k": three_faces_4k}


def make_scene(name: str) -> Scene:
    try:
        return BENCH_SCENES[name]()
    except KeyError:
        raise ValueError(f"unknown scene {name!r} (scenes: {', '.join(BENCH_SCENES)})") from None


# ---- the metrics ------------------------------------------------------------------------------------------------


class _TrackLike(Protocol):
    track_id: int
    box: Sequence[float]


class _CropLike(Protocol):
    track: _TrackLike


class Cropper(Protocol):
    def crops(self, frame: Frame) -> Sequence[_CropLike]: ...


@dataclass(frozen=True)
class FaceResult:
    """One true face over a scene. `counted_frames`: its visible frames after the allowance (recall counts these);
    `track_ids`: every track id matched to it; `windows`: windows its tracks scored, at most `ideal_windows`."""

    face_id: int
    visible_frames: int
    counted_frames: int
    covered_frames: int
    track_ids: tuple[int, ...]
    windows: int
    ideal_windows: int

    @property
    def recall(self) -> float:
        return self.covered_frames / self.counted_frames if self.counted_frames else 1.0


@dataclass(frozen=True)
class IdentityMetrics:
    """One person = one face id, measured on one scene (see `measure`)."""

    scene: str
    frames: int
    faces: tuple[FaceResult, ...]
    false_tracks: tuple[int, ...]  # track ids never matched to a true face
    duplicate_frames: int  # face-frames where more than one crop matched the same true face
    ms_per_frame: tuple[float, ...]  # wall time of each `cropper.crops(frame)` call

    @property
    def recall(self) -> float | None:
        counted = sum(f.counted_frames for f in self.faces)
        return sum(f.covered_frames for f in self.faces) / counted if counted else None

    @property
    def ids_per_face(self) -> tuple[int, ...]:
        return tuple(len(f.track_ids) for f in self.faces)

    @property
    def windows(self) -> int:
        return sum(f.windows for f in self.faces)

    @property
    def ideal_windows(self) -> int:
        return sum(f.ideal_windows for f in self.faces)

    @property
    def windows_ratio(self) -> float | None:
        return self.windows / self.ideal_windows if self.ideal_windows else None

    def ms_percentile(self, q: float) -> float:
        return float(np.percentile(self.ms_per_frame, q)) if self.ms_per_frame else float("nan")

    def summary(self) -> str:
        recall = "-" if self.recall is None else f"{self.recall:.3f}"
        ratio = "-" if self.windows_ratio is None else f"{self.windows_ratio:.3f}"
        per_face = ", ".join(
            f"face {f.face_id}: recall {f.recall:.2f}, track ids {list(f.track_ids)}, "
            f"windows {f.windows}/{f.ideal_windows}"
            for f in self.faces
        )
        return (
            f"{self.scene}: recall {recall}, ids per face {list(self.ids_per_face)}, windows {self.windows}/"
            f"{self.ideal_windows} ({ratio}), false tracks {list(self.false_tracks)}, duplicate face-frames "
            f"{self.duplicate_frames}" + (f" ({per_face})" if per_face else "")
        )


def measure(
    scene: Scene,
    cropper: Cropper,
    window: int = WINDOW,
    allowance: int = ALLOWANCE,
    min_iou: float = MIN_IOU,
    stream_id: str = "scene",
) -> IdentityMetrics:
    """Feed `scene` through `cropper` frame by frame and score it against the ground truth.

    Each crop is matched to the true face its track box overlaps most, if that IoU is at least `min_iou`.
    - recall: true face-frames covered by at least one crop / true face-frames, not counting a face's first
      `allowance` frames after it first appears (a new face may take that long to be found);
    - ids per true face: the distinct track ids matched to it (1 is right);
    - false tracks: track ids never matched to any true face;
    - windows: a track with n crops scores max(0, n - window + 1) windows; each track counts for the true face it
      matched most often, and a face's total is capped at its ideal, max(0, visible frames - window + 1), so a
      duplicate track cannot make up for a lost one (duplicates show as extra ids).
    """
    if window < 1 or allowance < 0 or not 0 < min_iou <= 1:
        raise ValueError(f"need window >= 1, allowance >= 0, 0 < min_iou <= 1; got {window}, {allowance}, {min_iou}")
    face_ids = scene.face_ids()
    first_seen: dict[int, int] = {}
    visible = dict.fromkeys(face_ids, 0)
    counted = dict.fromkeys(face_ids, 0)
    covered = dict.fromkeys(face_ids, 0)
    crops_per_track: dict[int, int] = {}
    matches: dict[int, dict[int, int]] = {}  # track id -> true face id -> frames matched
    duplicate_frames = 0
    timings = []
    for index, image in enumerate(scene.frames()):
        frame = Frame(stream_id, index, time.time(), index / scene.fps, image)
        began = time.perf_counter()
        crops = cropper.crops(frame)
        timings.append((time.perf_counter() - began) * 1000.0)
        truth = scene.truth[index]
        for crop in crops:
            crops_per_track[crop.track.track_id] = crops_per_track.get(crop.track.track_id, 0) + 1
            matches.setdefault(crop.track.track_id, {})
        matched_to: dict[int, int] = {}  # true face id -> crops matched this frame
        if truth and crops:
            iou = iou_matrix(
                np.array([crop.track.box for crop in crops], np.float64).reshape(-1, 4),
                np.array([face.box for face in truth], np.float64).reshape(-1, 4),
            )
            for row, crop in enumerate(crops):
                col = int(np.argmax(iou[row]))
                if iou[row, col] >= min_iou:
                    face_id = truth[col].face_id
                    track_matches = matches[crop.track.track_id]
                    track_matches[face_id] = track_matches.get(face_id, 0) + 1
                    matched_to[face_id] = matched_to.get(face_id, 0) + 1
        for face in truth:
            first_seen.setdefault(face.face_id, index)
            visible[face.face_id] += 1
            if index >= first_seen[face.face_id] + allowance:
                counted[face.face_id] += 1
                covered[face.face_id] += face.face_id in matched_to
            duplicate_frames += matched_to.get(face.face_id, 0) > 1

    owner = {track: max(faces, key=lambda f: (faces[f], -f)) for track, faces in matches.items() if faces}
    results = []
    for face_id in face_ids:
        ideal = max(0, visible[face_id] - window + 1)
        scored = sum(max(0, crops_per_track[t] - window + 1) for t, f in owner.items() if f == face_id)
        results.append(
            FaceResult(
                face_id=face_id,
                visible_frames=visible[face_id],
                counted_frames=counted[face_id],
                covered_frames=covered[face_id],
                track_ids=tuple(sorted(t for t, faces in matches.items() if face_id in faces)),
                windows=min(scored, ideal),
                ideal_windows=ideal,
            )
        )
    false_tracks = tuple(sorted(t for t, faces in matches.items() if not faces))
    return IdentityMetrics(scene.name, len(scene), tuple(results), false_tracks, duplicate_frames, tuple(timings))


def measure_settings(scene: Scene, overrides: Mapping[str, Any], warmup: int = 0) -> IdentityMetrics:
    """Build the detect → track → crop unit from the default settings with `overrides` (dotted keys), measure it
    on `scene` and close it. `warmup`: frames of the scene first fed to a separate, discarded unit (timing only)."""
    from stream.config import Settings, with_overrides
    from stream.faces.cropper import build_cropper

    settings = with_overrides(Settings(), dict(overrides), "face scenes")
    if warmup:
        spare = build_cropper("warmup", settings)
        try:
            for index, image in zip(range(warmup), scene.frames(), strict=False):
                spare.crops(Frame("warmup", index, time.time(), None, image))
        finally:
            spare.close()
    cropper = build_cropper(scene.name, settings)
    try:
        return measure(scene, cropper, stream_id=scene.name)
    finally:
        cropper.close()
