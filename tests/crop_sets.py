"""Face crop sets for calibrating and checking reduced-precision engines (tests and bench/encode.py).

Cut from skimage's astronaut the way a face detector's boxes vary from frame to frame (shifted, scaled,
mirrored, brighter or darker), plus a few crops of other skimage pictures, so a calibration set is not one
image repeated. Nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import cv2
import numpy as np
from skimage import data

from model.weights import LoadedModel, random_model, state_dict_hash
from stream.capture.demo import ASTRONAUT_FACE_BOX, astronaut_bgr
from tests.helpers import fit_seed_head


def _to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[:, :, ::-1])


def to_gray(crop_bgr: np.ndarray) -> np.ndarray:
    """The same crop with its colour removed (still 3 channels)."""
    return cv2.cvtColor(cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def varied_face_crops(count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` astronaut face crops: box shifted by up to ±15% and scaled 0.8-1.3x, half mirrored, gain 0.6-1.4."""
    rng = np.random.default_rng(seed)
    frame = astronaut_bgr()
    x1, y1, x2, y2 = ASTRONAUT_FACE_BOX
    width, height = x2 - x1, y2 - y1
    crops = []
    for index in range(count):
        scale = rng.uniform(0.8, 1.3)
        cx = (x1 + x2) / 2 + rng.uniform(-0.15, 0.15) * width
        cy = (y1 + y2) / 2 + rng.uniform(-0.15, 0.15) * height
        w, h = width * scale, height * scale
        left, top = max(0, round(cx - w / 2)), max(0, round(cy - h / 2))
        crop = frame[top : round(cy + h / 2), left : round(cx + w / 2)].astype(np.float32) * rng.uniform(0.6, 1.4)
        crop = np.clip(crop, 0, 255).astype(np.uint8)
        crops.append(np.ascontiguousarray(crop[:, ::-1] if index % 2 else crop))
    return crops


def other_picture_crops() -> list[np.ndarray]:
    """Crops of other skimage pictures: the cameraman's head (grayscale), a cat's face, a cup, a rocket."""
    return [
        _to_bgr(data.camera()[40:200, 180:330]),
        _to_bgr(data.chelsea()[20:220, 110:300]),
        _to_bgr(data.coffee()[50:350, 150:450]),
        _to_bgr(data.rocket()[100:300, 200:400]),
    ]


def calibration_crops(count: int = 24, seed: int = 0) -> list[np.ndarray]:
    """A calibration set: `count - 4` varied astronaut crops and 4 crops of other pictures."""
    return varied_face_crops(count - 4, seed) + other_picture_crops()


def held_back_crops(count: int = 24, seed: int = 1) -> list[np.ndarray]:
    """A set the calibration never saw: colour crops, then the same number of grayscale crops.

    In that order, sliding windows sweep from all-colour through mixed to all-gray, so with a head fitted
    on colour vs gray (tests/helpers.fit_seed_head) the window scores cross the sensitive middle.
    """
    colour = varied_face_crops(count // 2, seed)
    return colour + [to_gray(crop) for crop in varied_face_crops(count - count // 2, seed + 100)]


@cache
def responsive_seed_model() -> LoadedModel:
    """The seeded random seed-arch model with its head fitted to call colour faces FAKE and gray faces REAL.

    Built once per process (tests share it, and its weights hash keys the cached graphs): a checkpoint whose
    head responds to its input, so |Δp_fake| between engines means something.
    """
    base = random_model()
    colour = varied_face_crops(6, seed=7)
    network = fit_seed_head(base.network, colour, [to_gray(crop) for crop in colour])
    return replace(base, network=network, name="test-fitted-head", weights_hash=state_dict_hash(network))
