"""Face crops for calibrating and gating the int8 engine, cut by the serving pipeline's own detect → track → crop
unit from the built-in demo (two faces at several sizes, moving), so calibration sees crops exactly as served."""

from __future__ import annotations

import itertools

from model.engines import Calibration
from stream.capture.demo import demo_frames
from stream.config import Settings
from stream.faces.cropper import build_cropper
from stream.records import Frame

FIT_CROPS, HELD_BACK_CROPS = 32, 24
MAX_FRAMES = 600  # the demo's first 20 s at most


def demo_calibration(settings: Settings) -> Calibration:
    """Every other crop of the demo calibrates; the ones between are held back for the parity gate."""
    cropper = build_cropper("calibration", settings)
    crops = []
    try:
        for index, decoded in enumerate(itertools.islice(demo_frames(paced=False), MAX_FRAMES)):
            frame = Frame("calibration", index, float(index), decoded.t_media, decoded.image_bgr)
            crops.extend(crop.image_bgr for crop in cropper.crops(frame))
            if len(crops) >= 2 * max(FIT_CROPS, HELD_BACK_CROPS):
                break
    finally:
        cropper.close()
    held_back = crops[1::2][:HELD_BACK_CROPS]
    window = min(settings.model.window, len(held_back))
    return Calibration(fit=crops[0::2][:FIT_CROPS], held_back=held_back, window=max(window, 1))
