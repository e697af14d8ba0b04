"""Crops, resizing and normalisation as the original did them: tight box, PIL-like resize, BGR kept."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from model.preprocess import SEED_PREPROCESSING, Preprocessing, clip_box, crop_face, crops_to_batch, resize_crop
from tests.helpers import astronaut_bgr, astronaut_face_bgr

pytestmark = pytest.mark.fast  # make test-fast


def test_boxes_are_clipped_never_wrapped() -> None:
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[:, :10] = 255  # a stripe at the left edge; wrapping a negative index would pull in the right edge
    crop = crop_face(frame, (-30, -20, 20, 40))
    assert crop.shape == (40, 20, 3)
    assert clip_box((-30, -20, 20, 40), 200, 100) == (0, 0, 20, 40)
    assert crop_face(frame, (250, 10, 300, 50)) is None
    assert crop_face(frame, (190, 90, 400, 400)).shape == (10, 10, 3)


def test_crop_is_tight_at_the_box() -> None:
    frame = astronaut_bgr()
    crop = crop_face(frame, (165.2, 30.4, 274.6, 159.7))
    assert crop.shape == (130, 110, 3)
    assert np.array_equal(crop, frame[30:160, 165:275])


def test_resize_matches_pil_within_one_grey_level() -> None:
    crop = astronaut_bgr()[10:250, 140:380]  # 240 px, as seed-notes measured
    ours = resize_crop(crop, 112).permute(1, 2, 0).numpy().astype(int)
    pil = np.asarray(Image.fromarray(crop).resize((112, 112), Image.BILINEAR)).astype(int)
    difference = np.abs(ours - pil)
    assert difference.max() <= 1
    assert difference.mean() < 0.3


def test_channels_stay_bgr_and_are_normalised_with_the_original_statistics() -> None:
    crop = np.zeros((50, 50, 3), np.uint8)
    crop[:, :, 0] = 255  # pure blue in BGR
    batch = crops_to_batch([crop])
    assert batch.shape == (1, 3, 112, 112) and batch.dtype == torch.float32
    mean, std = SEED_PREPROCESSING.mean, SEED_PREPROCESSING.std
    expected = [(1.0 - mean[0]) / std[0], (0.0 - mean[1]) / std[1], (0.0 - mean[2]) / std[2]]
    assert torch.allclose(batch[0, :, 56, 56], torch.tensor(expected), atol=1e-5)


def test_rgb_checkpoints_get_their_channels_flipped() -> None:
    crop = np.zeros((50, 50, 3), np.uint8)
    crop[:, :, 0] = 255
    rgb = Preprocessing(channel_order="RGB", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    assert torch.allclose(crops_to_batch([crop], rgb)[0, :, 0, 0], torch.tensor([0.0, 0.0, 1.0]))


def test_crops_of_different_sizes_batch_together() -> None:
    face = astronaut_face_bgr()
    batch = crops_to_batch([face, face[::2, ::2], np.ascontiguousarray(face[:40, :90])])
    assert batch.shape == (3, 3, 112, 112)
    assert crops_to_batch([]).shape == (0, 3, 112, 112)


def test_bad_preprocessing_and_frames_are_refused() -> None:
    with pytest.raises(ValueError, match="channel_order"):
        Preprocessing(channel_order="YUV")
    with pytest.raises(ValueError, match="HxWx3"):
        crop_face(np.zeros((10, 10), np.uint8), (0, 0, 5, 5))
