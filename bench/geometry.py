"""Crop geometry of MediaPipe's short-range model, re-detecting a face inside a square crop 2.5x its box.

The configured `BoxMapping` (dx 0.066, dy 0.077, scale 0.886 x 0.887) takes a FULL-RANGE box found on the whole
frame to the original's tight dlib-like box. This script measures, on the same faces, the short-range box found by
`stream.faces.CropFaceDetector` in a 2.5x crop (mapped back to frame pixels) against the full-range box, over
face sizes 60-250 px (tight width), positions, backgrounds and the offline faces there are (skimage's astronaut and
cameraman, matplotlib's Grace Hopper, each also mirrored; skimage's LFW subset separately), and turns it into a
`BoxMapping` for short-range boxes that lands on the same tight box (short -> full-range equivalent -> tight).
Then: the frame-to-frame jitter of each detector's mapped box on a still face in a noisy (JPEG) video, and the
time per call. Run: `.venv/bin/python bench/geometry.py [--positions 6] [--input-size 256]` (~1 min on 2 cores).
When `dlib` is importable (it is not a dependency: e.g. `pip install --target /tmp/dlibpkg --no-deps dlib-bin` and
`PYTHONPATH=/tmp/dlibpkg`), both boxes are also compared with dlib's HOG box itself on the same faces.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median_seconds, print_table
from stream.capture.demo import astronaut_bgr, background, head_patch, paste
from stream.config import BoxMapping
from stream.faces.mediapipe_detectors import CropFaceDetector, FaceDetector, square_region

FULL_RANGE = BoxMapping()  # the configured full-range -> tight mapping (seed-notes.md)
IDENTITY = BoxMapping(dx=0.0, dy=0.0, scale_w=1.0, scale_h=1.0)
SIZES = (60, 80, 100, 130, 160, 200, 250)  # tight (dlib-like) face widths in frame pixels
FRAMES = ((640, 480), (1280, 720), (1920, 1080))
CROP_SCALE = 2.5
MIN_SCORE = 0.3  # low, so that both detectors answer on the same faces; scores are reported
Box = tuple[float, float, float, float]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class Face:
    """A patch holding one face, and its tight box inside the patch at scale 1 (from the full-range model)."""

    name: str
    patch: np.ndarray
    tight: Box

    def scaled(self, target_width: float) -> tuple[np.ndarray, Box]:
        factor = target_width / (self.tight[2] - self.tight[0])
        size = (max(1, round(self.patch.shape[1] * factor)), max(1, round(self.patch.shape[0] * factor)))
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
        patch = cv2.resize(self.patch, size, interpolation=interpolation)
        fx, fy = size[0] / self.patch.shape[1], size[1] / self.patch.shape[0]
        x1, y1, x2, y2 = self.tight
        return patch, (x1 * fx, y1 * fy, x2 * fx, y2 * fy)


def _around_face(image: np.ndarray, detector: FaceDetector, margin: float) -> np.ndarray:
    """`image` cut to `margin` face widths around its one face (the full-range model's box), clipped."""
    found = detector.detect(image, _next_timestamp())
    x1, y1, x2, y2 = max(found, key=lambda d: d.score).box_xyxy
    w, h = x2 - x1, y2 - y1
    left, top = max(0, round(x1 - margin * w)), max(0, round(y1 - margin * h))
    right, bottom = min(image.shape[1], round(x2 + margin * w)), min(image.shape[0], round(y2 + margin * h))
    return np.ascontiguousarray(image[top:bottom, left:right])


_clock = [0]


def _next_timestamp() -> int:
    _clock[0] += 40
    return _clock[0]


def calibrate(name: str, patch: np.ndarray, detector: FaceDetector) -> Face | None:
    """The patch's tight box, from the full-range model on the patch pasted large on a plain background."""
    canvas = background(patch.shape[1] * 2, patch.shape[0] * 2).copy()
    paste(canvas, patch, patch.shape[1] // 2, patch.shape[0] // 2)
    found = detector.detect(canvas, _next_timestamp())
    if not found:
        return None
    x1, y1, x2, y2 = max(found, key=lambda d: d.score).box_xyxy
    ox, oy = patch.shape[1] // 2, patch.shape[0] // 2
    return Face(name, patch, (x1 - ox, y1 - oy, x2 - ox, y2 - oy))


def natural_faces(detector: FaceDetector) -> list[Face]:
    import matplotlib
    from skimage import data

    hopper = cv2.imread(str(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"))
    camera = cv2.cvtColor(data.camera(), cv2.COLOR_GRAY2BGR)
    patches = {
        "astronaut": head_patch(),
        "astronaut (wide)": _around_face(np.ascontiguousarray(astronaut_bgr()), detector, 1.0),
        "hopper": _around_face(hopper, detector, 1.0),
        "cameraman": _around_face(camera, detector, 1.0),
    }
    faces = []
    for name, patch in patches.items():
        for mirrored in (False, True):
            image = np.ascontiguousarray(patch[:, ::-1]) if mirrored else patch
            face = calibrate(name + (" mirrored" if mirrored else ""), image, detector)
            if face is not None:
                faces.append(face)
    return faces


def lfw_faces(detector: FaceDetector, limit: int) -> list[Face]:
    """skimage's LFW subset: 25x25 grey faces cut tight, upscaled 4x (blurry, hard-edged); those found."""
    from skimage import data

    faces = []
    for index, gray in enumerate(data.lfw_subset()[:100]):
        patch = cv2.cvtColor(
            cv2.resize((gray * 255).astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR
        )
        face = calibrate(f"lfw {index}", patch, detector)
        if face is not None:
            faces.append(face)
        if len(faces) >= limit:
            break
    return faces


def busy_background(width: int, height: int) -> np.ndarray:
    from skimage import data

    return cv2.resize(np.ascontiguousarray(data.rocket()[:, :, ::-1]), (width, height), interpolation=cv2.INTER_AREA)


def frame_for(patch: np.ndarray) -> tuple[int, int]:
    for width, height in FRAMES:
        if patch.shape[1] + 20 <= width and patch.shape[0] + 20 <= height:
            return width, height
    return FRAMES[-1]


def best(found: Sequence) -> object | None:
    return max(found, key=lambda d: d.score, default=None)


def xywh(box: Box) -> tuple[float, float, float, float]:
    return box[0], box[1], box[2] - box[0], box[3] - box[1]


def iou(a: Box, b: Box) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Pair:
    """One face seen by both: raw full-range box (whole frame) and raw short-range box (crop), frame pixels."""

    face: str
    size: int
    full: Box
    short: Box
    full_score: float
    short_score: float
    dlib: Box | None = None  # dlib's HOG box on the same face, when dlib is installed

    def short_in_full(self) -> tuple[float, float, float, float]:
        """Where the short box sits in the full one: x offset / w, y offset / h, w ratio, h ratio."""
        fx, fy, fw, fh = xywh(self.full)
        sx, sy, sw, sh = xywh(self.short)
        return (sx - fx) / fw, (sy - fy) / fh, sw / fw, sh / fh

    def composed(self) -> tuple[float, float, float, float]:
        """The short-range BoxMapping (dx, dy, scale_w, scale_h) that gives this face exactly the full-range
        box's tight box: full = short shifted/scaled, then the full-range mapping."""
        fx, fy, fw, fh = xywh(self.full)
        sx, sy, sw, sh = xywh(self.short)
        rw, rh = fw / sw, fh / sh
        return (
            (fx - sx) / sw + FULL_RANGE.dx * rw,
            (fy - sy) / sh + FULL_RANGE.dy * rh,
            FULL_RANGE.scale_w * rw,
            FULL_RANGE.scale_h * rh,
        )


def measure(
    faces: list[Face],
    full: FaceDetector,
    crop: CropFaceDetector,
    positions: int,
    rng: np.random.Generator,
    crop_shift: float = 0.0,
    crop_scale: float = CROP_SCALE,
    sizes: Sequence[int] = SIZES,
    with_dlib: bool = False,
) -> tuple[list[Pair], dict[tuple[str, int], list[int]]]:
    """Both detectors on the same frames; the crop is `crop_scale` x the full-range tight box, its centre moved by
    up to `crop_shift` box widths (a track's prediction error). Also counts (faces, full found, both found)."""
    pairs: list[Pair] = []
    counts: dict[tuple[str, int], list[int]] = {}
    for face in faces:
        for size in sizes:
            patch, _ = face.scaled(size)
            width, height = frame_for(patch)
            count = counts.setdefault((face.name, size), [0, 0, 0])
            for position in range(positions):
                canvas = (background(width, height) if position % 2 == 0 else busy_background(width, height)).copy()
                x = int(rng.integers(0, max(1, width - patch.shape[1])))
                y = int(rng.integers(0, max(1, height - patch.shape[0])))
                paste(canvas, patch, x, y)
                count[0] += 1
                full_found = best(full.detect(canvas, _next_timestamp()))
                if full_found is None:
                    continue
                count[1] += 1
                full_box = full_found.box_xyxy
                tight_box = FULL_RANGE.apply(*xywh(full_box))
                region = square_region(tight_box, crop_scale)
                w = tight_box[2] - tight_box[0]
                dx, dy = rng.uniform(-crop_shift, crop_shift, 2) * w
                region = (region[0] + dx, region[1] + dy, region[2] + dx, region[3] + dy)
                short_found = crop.detect_regions(canvas, [region])[0]
                if short_found is None:
                    continue
                count[2] += 1
                dlib_box = dlib_face(canvas, region, tight_box) if with_dlib else None
                pairs.append(
                    Pair(face.name, size, full_box, short_found.box_xyxy, full_found.score, short_found.score, dlib_box)
                )
    return pairs, counts


_dlib_detector: list[object] = []


def dlib_available() -> bool:
    try:
        import dlib
    except ImportError:
        return False
    _dlib_detector.append(dlib.get_frontal_face_detector())
    return True


def dlib_face(canvas: np.ndarray, region: Box, tight: Box) -> Box | None:
    """dlib's HOG box (upsampled once, as face_recognition did) overlapping `tight` most, searched in `region`
    (a sliding-window detector finds the same boxes in a crop as in the frame, away from the crop's edges)."""
    height, width = canvas.shape[:2]
    x1, y1 = max(0, round(region[0])), max(0, round(region[1]))
    x2, y2 = min(width, round(region[2])), min(height, round(region[3]))
    rgb = np.ascontiguousarray(canvas[y1:y2, x1:x2, ::-1])
    boxes = [(r.left() + x1, r.top() + y1, r.right() + x1, r.bottom() + y1) for r in _dlib_detector[0](rgb, 1)]
    scored = [(iou(b, tight), b) for b in boxes]
    overlap, box = max(scored, default=(0.0, None))
    return box if overlap > 0.3 else None


def direct_mapping(pairs: list[Pair], source: str) -> list[tuple[float, float]]:
    """(mean, std) of dx, dy, scale_w, scale_h taking the `source` ("full" or "short") box straight to dlib's."""
    values = []
    for pair in pairs:
        if pair.dlib is None:
            continue
        x, y, w, h = xywh(pair.full if source == "full" else pair.short)
        dx, dy, dw, dh = xywh(pair.dlib)
        values.append(((dx - x) / w, (dy - y) / h, dw / w, dh / h))
    if not values:
        return []
    return [(statistics.fmean(v[i] for v in values), statistics.pstdev(v[i] for v in values)) for i in range(4)]


def mean_std(values: Sequence[float]) -> str:
    if not values:
        return "-"
    spread = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):+.3f}±{spread:.3f}"


def summary_row(label: str, pairs: list[Pair], faces: int, full_found: int) -> list[object]:
    inside = [p.short_in_full() for p in pairs]
    return [
        label,
        faces,
        f"{full_found}/{faces}",
        f"{len(pairs)}/{full_found}",
        *(mean_std([v[i] for v in inside]) for i in range(4)),
        f"{statistics.fmean(p.full_score for p in pairs):.2f}" if pairs else "-",
        f"{statistics.fmean(p.short_score for p in pairs):.2f}" if pairs else "-",
    ]


HEADERS = ("", "faces", "full found", "short found", "x off/w", "y off/h", "w ratio", "h ratio", "full sc", "short sc")


def print_geometry(pairs: list[Pair], counts: dict[tuple[str, int], list[int]], by: str) -> None:
    keys = sorted({k[0] for k in counts}) if by == "face" else sorted({k[1] for k in counts})
    rows = []
    for key in keys:
        selected = [p for p in pairs if (p.face if by == "face" else p.size) == key]
        chosen = [c for k, c in counts.items() if (k[0] if by == "face" else k[1]) == key]
        rows.append(summary_row(f"{key} px" if by == "size" else str(key), selected, *_totals(chosen)))
    rows.append(summary_row("all", pairs, *_totals(list(counts.values()))))
    print_table(HEADERS, rows)


def _totals(chosen: list[list[int]]) -> tuple[int, int]:
    return sum(c[0] for c in chosen), sum(c[1] for c in chosen)


def fitted_mapping(pairs: list[Pair]) -> tuple[BoxMapping, list[tuple[float, float]]]:
    """The mean of the per-face composed mappings, and each constant's (mean, std)."""
    values = [p.composed() for p in pairs]
    stats = [(statistics.fmean(v[i] for v in values), statistics.pstdev(v[i] for v in values)) for i in range(4)]
    return BoxMapping(*(round(mean, 3) for mean, _ in stats)), stats


def agreement(pairs: list[Pair], mapping: BoxMapping) -> tuple[float, float, float, float]:
    """With `mapping`: IoU of the short-range tight box with the full-range tight box (median, 5th percentile),
    and the centre distance / width (median, 95th percentile)."""
    ious, shifts = [], []
    for pair in pairs:
        a, b = mapping.apply(*xywh(pair.short)), FULL_RANGE.apply(*xywh(pair.full))
        ious.append(iou(a, b))
        w = b[2] - b[0]
        shifts.append(float(np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2)) / w)
    return (
        float(np.median(ious)),
        float(np.percentile(ious, 5)),
        float(np.median(shifts)),
        float(np.percentile(shifts, 95)),
    )


def noisy_video(clean: np.ndarray, frames: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A still picture with sensor-like noise (σ 2 grey levels) and JPEG quality 85 on every frame."""
    video = []
    for _ in range(frames):
        noisy = np.clip(clean.astype(np.float32) + rng.normal(0.0, 2.0, clean.shape), 0, 255).astype(np.uint8)
        _, encoded = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 85])
        video.append(cv2.imdecode(encoded, cv2.IMREAD_COLOR))
    return video


def jitter(boxes: list[Box | None]) -> tuple[str, str, str, str, str]:
    """Found rate; std over frames of centre x, centre y and width; median frame-to-frame centre jump (all / width)."""
    found = [b for b in boxes if b is not None]
    if len(found) < 2:
        return f"{len(found)}/{len(boxes)}", "-", "-", "-", "-"
    w = statistics.fmean(b[2] - b[0] for b in found)
    cx = [(b[0] + b[2]) / 2 / w for b in found]
    cy = [(b[1] + b[3]) / 2 / w for b in found]
    widths = [(b[2] - b[0]) / w for b in found]
    jumps = [
        float(np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2)) / w
        for a, b in itertools.pairwise(boxes)
        if a is not None and b is not None
    ]
    median_jump = f"{float(np.median(jumps)):.4f}" if jumps else "-"
    return (
        f"{len(found)}/{len(boxes)}",
        f"{statistics.pstdev(cx):.4f}",
        f"{statistics.pstdev(cy):.4f}",
        f"{statistics.pstdev(widths):.4f}",
        median_jump,
    )


def jitter_table(
    faces: list[Face], full: FaceDetector, crops: dict[str, CropFaceDetector], frames: int, rng: np.random.Generator
) -> None:
    rows = []
    for face in faces:
        for (width, height), sizes in (((640, 480), (60, 80, 120)), ((1920, 1080), (60, 80, 120, 200))):
            for size in sizes:
                patch, tight = face.scaled(size)
                canvas = background(width, height).copy()
                x, y = (width - patch.shape[1]) // 2 + 7, (height - patch.shape[0]) // 2 + 5
                paste(canvas, patch, x, y)
                truth = (tight[0] + x, tight[1] + y, tight[2] + x, tight[3] + y)
                video = noisy_video(canvas, frames, rng)
                label = f"{face.name} {size}px {width}x{height}"
                full_boxes = []
                for frame in video:
                    found = best(full.detect(frame, _next_timestamp()))
                    full_boxes.append(None if found is None else found.box_xyxy)
                rows.append([label, "full-range, whole frame", *jitter(full_boxes)])
                for name, crop in crops.items():
                    fixed, follow, last = [], [], truth
                    for frame in video:
                        found = crop.detect_regions(frame, [square_region(truth, CROP_SCALE)])[0]
                        fixed.append(None if found is None else found.box_xyxy)
                        found = crop.detect_regions(frame, [square_region(last, CROP_SCALE)])[0]
                        follow.append(None if found is None else found.box_xyxy)
                        last = last if found is None else found.box_xyxy
                    rows.append([label, f"short-range {name}, fixed crop", *jitter(fixed)])
                    rows.append([label, f"short-range {name}, crop follows", *jitter(follow)])
    print_table(("face", "detector", "found", "std cx/w", "std cy/w", "std w/w", "median jump/w"), rows)


def median_ms(step: Callable[[], object], repeats: int) -> float:
    return 1000 * median_seconds(step, repeats, warmup=3)


def timing_table(face: Face, full: FaceDetector, crops: dict[str, CropFaceDetector], repeats: int) -> None:
    rows = []
    for (width, height), size in (((640, 480), 80), ((640, 480), 200), ((1920, 1080), 80), ((1920, 1080), 200)):
        patch, tight = face.scaled(size)
        canvas = background(width, height).copy()
        x, y = (width - patch.shape[1]) // 2, (height - patch.shape[0]) // 2
        paste(canvas, patch, x, y)
        region = square_region((tight[0] + x, tight[1] + y, tight[2] + x, tight[3] + y), CROP_SCALE)
        label = f"{width}x{height}, {size} px face"
        ms = median_ms(lambda canvas=canvas: full.detect(canvas, _next_timestamp()), repeats)
        rows.append([label, "full-range, whole frame", ms])
        for name, crop in crops.items():
            side = round(region[2] - region[0])
            ms = median_ms(
                lambda crop=crop, canvas=canvas, region=region: crop.detect_regions(canvas, [region]), repeats
            )
            rows.append([label, f"short-range {name}, one {side} px crop", ms])
    print_table(("frame", "call", "ms (median)"), rows)


NAMES = ("dx", "dy", "scale_w", "scale_h")


def constants(stats: Sequence[tuple[float, float]]) -> list[str]:
    return [f"{mean:.3f}±{std:.3f}" for mean, std in stats]


def is_frontal(pair: Pair) -> bool:
    return not pair.face.startswith("cameraman")


def report_mapping(pairs: list[Pair]) -> BoxMapping:
    """Prints the composed short-range mappings (frontal faces; all faces) and how well they agree; returns the
    frontal one, the recommended default: on the 3/4-view face the two models disagree on the centre itself."""
    frontal = [p for p in pairs if is_frontal(p)]
    mapping, frontal_stats = fitted_mapping(frontal)
    all_mapping, all_stats = fitted_mapping(pairs)
    print("\nShort-range BoxMapping (short -> full-range equivalent -> tight), mean±std over faces, by size:")
    rows = []
    for size in SIZES:
        rows.append([f"{size} px", *constants(fitted_mapping([p for p in frontal if p.size == size])[1])])
    rows.append([f"frontal faces, all sizes ({len(frontal)})", *constants(frontal_stats)])
    rows.append([f"with the 3/4-view cameraman ({len(pairs)})", *constants(all_stats)])
    print_table(("frontal faces", *NAMES), rows)
    print(f"  recommended (frontal): {mapping}")
    print(f"  with the 3/4-view face: {all_mapping}")
    for label, used in (
        ("recommended", mapping),
        ("with the 3/4-view face", all_mapping),
        ("full-range's", FULL_RANGE),
    ):
        parts = []
        for kind, chosen in (("frontal", frontal), ("3/4 view", [p for p in pairs if not is_frontal(p)])):
            med_iou, low_iou, med_shift, high_shift = agreement(chosen, used)
            parts.append(
                f"{kind}: IoU median {med_iou:.3f}, 5th pct {low_iou:.3f}, "
                f"centre distance/w median {med_shift:.3f}, 95th pct {high_shift:.3f}"
            )
        print(f"  tight box, short-range + {label} mapping vs full-range + BoxMapping(): " + "; ".join(parts))
    return mapping


def report_dlib(pairs: list[Pair], mapping: BoxMapping) -> None:
    print("\nCross-check against dlib's HOG box itself (the original's detector, upsample 1), frontal faces:")
    frontal = [p for p in pairs if is_frontal(p)]
    rows = []
    for size in (*SIZES, None):
        chosen = [p for p in frontal if size is None or p.size == size]
        found = sum(p.dlib is not None for p in chosen)
        rows.append(
            [
                f"{size} px" if size else "all",
                f"{found}/{len(chosen)}",
                *constants(direct_mapping(chosen, "full")),
                *constants(direct_mapping(chosen, "short")),
            ]
        )
    print_table(("", "dlib found", *(f"full {n}" for n in NAMES), *(f"short {n}" for n in NAMES)), rows)
    with_box = [p for p in frontal if p.dlib is not None]
    for label, use_short, used in (
        ("full-range + BoxMapping()", False, FULL_RANGE),
        ("short-range + fitted", True, mapping),
    ):
        ious = [iou(used.apply(*xywh(p.short if use_short else p.full)), p.dlib) for p in with_box]
        print(
            f"  IoU with dlib's box, {label}: median {float(np.median(ious)):.3f}, "
            f"5th pct {float(np.percentile(ious, 5)):.3f}"
        )


def report_sensitivity(
    faces: list[Face], full: FaceDetector, crop: CropFaceDetector, mapping: BoxMapping, rng: np.random.Generator
) -> None:
    print("\nSensitivity to where the crop is (frontal faces, sizes 60/100/160/250, 4 positions):")
    frontal = [f for f in faces if not f.name.startswith("cameraman")]
    rows = []
    for shift, scale in ((0.0, 2.5), (0.1, 2.5), (0.2, 2.5), (0.0, 2.0), (0.0, 3.0)):
        moved, _ = measure(frontal, full, crop, 4, rng, crop_shift=shift, crop_scale=scale, sizes=(60, 100, 160, 250))
        med_iou, low_iou, _, _ = agreement(moved, mapping)
        rows.append(
            [
                f"shift ≤{shift:.1f}w, scale {scale}",
                len(moved),
                *constants(fitted_mapping(moved)[1]),
                f"{med_iou:.3f} / {low_iou:.3f}",
            ]
        )
    print_table(("crop", "faces", *NAMES, "IoU with recommended: median / 5th"), rows)


def report_lfw(
    full: FaceDetector, crop: CropFaceDetector, mapping: BoxMapping, limit: int, rng: np.random.Generator
) -> None:
    lfw = lfw_faces(full, limit)
    pairs, counts = measure(lfw, full, crop, 1, rng, sizes=(60, 100, 160))
    print(f"\nLFW subset ({len(lfw)} faces found at 100 px; 25x25 grey, cut tight, upscaled: not pooled):")
    by_size: dict[tuple[str, int], list[int]] = {}
    for (_, size), count in counts.items():
        total = by_size.setdefault(("lfw", size), [0, 0, 0])
        by_size[("lfw", size)] = [a + b for a, b in zip(total, count, strict=True)]
    print_geometry(pairs, by_size, "size")
    if pairs:
        print(
            "  its own mapping: "
            + ", ".join(f"{n} {c}" for n, c in zip(NAMES, constants(fitted_mapping(pairs)[1]), strict=True))
        )
        med_iou, low_iou, _, _ = agreement(pairs, mapping)
        print(f"  IoU with the recommended mapping: median {med_iou:.3f}, 5th pct {low_iou:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--positions", type=int, default=6, help="positions per face and size")
    parser.add_argument("--input-size", type=int, default=256, help="CropFaceDetector input size measured")
    parser.add_argument("--lfw", type=int, default=30, help="LFW faces (0 to skip)")
    parser.add_argument("--frames", type=int, default=30, help="frames of the still-face jitter video")
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per timing row")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"CPU: {cpu_model()}; {platform.python_implementation()} {platform.python_version()}")
    rng = np.random.default_rng(args.seed)
    with (
        FaceDetector(mapping=IDENTITY, min_score=MIN_SCORE) as full,
        CropFaceDetector(mapping=IDENTITY, min_score=MIN_SCORE, input_size=args.input_size) as crop,
    ):
        faces = natural_faces(full)
        print(
            f"faces: {', '.join(f.name for f in faces)}; crop {CROP_SCALE}x the full-range tight box, "
            f"input {args.input_size} px; min score {MIN_SCORE} for both"
        )
        with_dlib = dlib_available()
        pairs, counts = measure(faces, full, crop, args.positions, rng, with_dlib=with_dlib)
        print("\nShort-range box (crop) relative to the full-range box (whole frame), by tight face width:")
        print_geometry(pairs, counts, "size")
        print("\n... by face:")
        print_geometry(pairs, counts, "face")
        mapping = report_mapping(pairs)
        if with_dlib:
            report_dlib(pairs, mapping)
        else:
            print("\n(dlib not importable: the direct cross-check against dlib's HOG box is skipped)")
        report_sensitivity(faces, full, crop, mapping, rng)
        if args.lfw:
            report_lfw(full, crop, mapping, args.lfw, rng)

    other_size = 128 if args.input_size != 128 else 256
    with (
        FaceDetector(mapping=FULL_RANGE, min_score=MIN_SCORE) as full,
        CropFaceDetector(mapping=mapping, min_score=MIN_SCORE, input_size=args.input_size) as crop,
        CropFaceDetector(mapping=mapping, min_score=MIN_SCORE, input_size=other_size) as other,
    ):
        crops = {f"input {args.input_size}": crop, f"input {other_size}": other}
        still = [f for f in faces if f.name in ("astronaut", "hopper")]
        print(
            f"\nJitter of the mapped (tight) box on a still face, {args.frames} frames, noise σ2 + JPEG q85; "
            "'crop follows' re-centres each frame's crop on the last box, as a tracker would:"
        )
        jitter_table(still, full, crops, args.frames, rng)
        print(f"\nTime per call ({args.repeats} calls, median; the crop call includes cutting, resizing, converting):")
        timing_table(still[0], full, crops, args.repeats)


if __name__ == "__main__":
    main()
