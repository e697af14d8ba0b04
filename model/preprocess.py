"""Face boxes -> tight crops -> normalised BGR tensors [N, 3, 112, 112] on the model's device, as the original did."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms.functional import resize


@dataclass(frozen=True)
class Preprocessing:
    """How a checkpoint expects its crops: size, channel order and the normalisation statistics."""

    input_size: int = 112
    channel_order: str = "BGR"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        if self.channel_order not in ("BGR", "RGB"):
            raise ValueError(f"channel_order must be 'BGR' or 'RGB', got {self.channel_order!r}")
        if self.input_size < 32:
            raise ValueError(f"input_size must be at least 32 pixels, got {self.input_size}")


SEED_PREPROCESSING = Preprocessing()


def clip_box(box_xyxy: Sequence[float], width: int, height: int) -> tuple[int, int, int, int] | None:
    """Round a box to whole pixels inside the frame; None when nothing of it is left.

    Clipping (rather than slicing with negative numbers) keeps a box that pokes out of the frame from
    wrapping around to the other side.
    """
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    left, top = max(0, round(x1)), max(0, round(y1))
    right, bottom = min(width, round(x2)), min(height, round(y2))
    if right - left < 2 or bottom - top < 2:
        return None
    return left, top, right, bottom


def crop_face(frame_bgr: np.ndarray, box_xyxy: Sequence[float]) -> np.ndarray | None:
    """The tight crop (no margin) of one face from an HxWx3 uint8 BGR frame; None when the box is outside it."""
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError(f"frames must be HxWx3 BGR, got shape {frame_bgr.shape}")
    clipped = clip_box(box_xyxy, frame_bgr.shape[1], frame_bgr.shape[0])
    if clipped is None:
        return None
    left, top, right, bottom = clipped
    return frame_bgr[top:bottom, left:right]


def resize_crop(crop_bgr: np.ndarray, size: int, device: torch.device | str = "cpu") -> Tensor:
    """HxWx3 uint8 -> [3, size, size] uint8, antialiased bilinear (matches PIL's Resize within 1 grey level)."""
    if not (crop_bgr.flags.c_contiguous and crop_bgr.flags.writeable):
        crop_bgr = np.array(crop_bgr, order="C")  # torch.from_numpy needs a writable, contiguous array
    chw = torch.from_numpy(crop_bgr).permute(2, 0, 1)
    if torch.device(device).type == "cuda":
        chw = chw.pin_memory()  # a pinned source lets the copy to the GPU run asynchronously
    chw = chw.to(device, non_blocking=True)
    return resize(chw, [size, size], antialias=True)


def normalise(batch_uint8: Tensor, spec: Preprocessing) -> Tensor:
    """[N, 3, S, S] uint8 in BGR order -> float32 in `spec.channel_order`, /255, normalised with `spec`."""
    batch = batch_uint8.float().div_(255.0)
    if spec.channel_order == "RGB":
        batch = batch.flip(1)
    mean = torch.tensor(spec.mean, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=batch.device).view(1, 3, 1, 1)
    # The original normalised BGR pixels with RGB-ordered statistics; doing the same is what its weights expect.
    return batch.sub_(mean).div_(std)


def crops_to_batch(
    crops_bgr: Sequence[np.ndarray], spec: Preprocessing = SEED_PREPROCESSING, device: torch.device | str = "cpu"
) -> Tensor:
    """Crops of any sizes (HxWx3 uint8 BGR) -> one normalised batch [N, 3, S, S] on `device`."""
    if not crops_bgr:
        return torch.empty((0, 3, spec.input_size, spec.input_size), device=device)
    resized = torch.stack([resize_crop(crop, spec.input_size, device) for crop in crops_bgr])
    return normalise(resized, spec)
