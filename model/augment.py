"""Training-time changes to face clips (uint8 [T, S, S, 3] BGR), the same for every frame of a clip so a clip
stays a clip: JPEG compression, blur, colour, horizontal flip; and self-blended fakes (SBI, Shiohara & Yamasaki
2022): a real face blended with a warped, re-coloured copy of itself inside a soft face-shaped mask."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Augmentation:
    """Chances and strengths of each change (each drawn once per clip)."""

    flip: float = 0.5
    jpeg: float = 0.3
    jpeg_quality: tuple[int, int] = (40, 95)
    blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    colour: float = 0.5
    brightness: float = 0.15  # +- share of the range
    contrast: float = 0.15
    saturation: float = 0.2


def _per_frame(clip: np.ndarray, change) -> np.ndarray:
    return np.stack([change(frame) for frame in clip])


def augment_clip(clip: np.ndarray, rng: np.random.Generator, spec: Augmentation = Augmentation()) -> np.ndarray:
    """A randomly changed copy of `clip` [T, S, S, 3] uint8 BGR."""
    out = clip
    if rng.random() < spec.flip:
        out = out[:, :, ::-1]
    if rng.random() < spec.colour:
        gain = 1 + rng.uniform(-spec.contrast, spec.contrast)
        shift = 255 * rng.uniform(-spec.brightness, spec.brightness)
        saturation = 1 + rng.uniform(-spec.saturation, spec.saturation)
        values = out.astype(np.float32)
        grey = values.mean(axis=-1, keepdims=True)
        values = (grey + (values - grey) * saturation - 128) * gain + 128 + shift
        out = np.clip(values, 0, 255).astype(np.uint8)
    if rng.random() < spec.blur:
        sigma = rng.uniform(*spec.blur_sigma)
        out = _per_frame(out, lambda f: cv2.GaussianBlur(f, (0, 0), sigma))
    if rng.random() < spec.jpeg:
        quality = int(rng.integers(spec.jpeg_quality[0], spec.jpeg_quality[1] + 1))

        def compress(frame: np.ndarray) -> np.ndarray:
            ok, data = cv2.imencode(".jpg", np.ascontiguousarray(frame), [cv2.IMWRITE_JPEG_QUALITY, quality])
            return cv2.imdecode(data, cv2.IMREAD_COLOR) if ok else frame

        out = _per_frame(out, compress)
    return np.ascontiguousarray(out)


def blend_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    """A soft elliptical mask [S, S, 1] float32 over the inner face of a tight face crop, varied in size and edge."""
    mask = np.zeros((size, size), np.float32)
    centre = (int(size * rng.uniform(0.45, 0.55)), int(size * rng.uniform(0.5, 0.6)))
    axes = (int(size * rng.uniform(0.28, 0.4)), int(size * rng.uniform(0.32, 0.45)))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), size * rng.uniform(0.03, 0.08))
    return (mask * rng.uniform(0.7, 1.0))[:, :, None]


def self_blend_clip(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A FAKE made from a REAL clip: each frame's face blended with a warped, re-coloured copy of that frame."""
    size = clip.shape[1]
    scale = rng.uniform(0.94, 1.06)
    dx, dy = rng.uniform(-0.04, 0.04, size=2) * size
    warp = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-3, 3), scale)
    warp[:, 2] += (dx, dy)
    gains = rng.uniform(0.85, 1.15, size=3).astype(np.float32)
    offset = np.float32(rng.uniform(-12, 12))
    sharpen = rng.random() < 0.5
    mask = blend_mask(size, rng)
    frames = []
    for frame in clip:
        source = cv2.warpAffine(frame, warp, (size, size), borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        source = source * gains + offset
        if sharpen:
            source = cv2.addWeighted(source, 1.5, cv2.GaussianBlur(source, (0, 0), 1.0), -0.5, 0)
        else:
            source = cv2.GaussianBlur(source, (0, 0), 0.8)
        blended = source * mask + frame.astype(np.float32) * (1 - mask)
        frames.append(np.clip(blended, 0, 255).astype(np.uint8))
    return np.stack(frames)
