"""The built-in demo material, made on the fly from `skimage.data.astronaut()` (nothing is downloaded)."""

from __future__ import annotations

from functools import cache

import numpy as np
from skimage import data

# The astronaut's head in the 512x512 picture (x1, y1, x2, y2), measured once by eye and by MediaPipe.
ASTRONAUT_FACE_BOX = (165, 30, 275, 160)


@cache
def astronaut_bgr() -> np.ndarray:
    """skimage's astronaut (RGB) as a read-only 512x512x3 BGR frame."""
    frame = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    frame.setflags(write=False)
    return frame


def astronaut_face_crops() -> list[np.ndarray]:
    """A few face crops of different sizes and flips: sample input for timing the model."""
    x1, y1, x2, y2 = ASTRONAUT_FACE_BOX
    face = astronaut_bgr()[y1:y2, x1:x2]
    return [face.copy(), face[:, ::-1].copy(), face[::2, ::2].copy(), face[10:, 5:-5].copy()]
