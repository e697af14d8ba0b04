"""Draws each tracked face's box, id, rolling score and verdict onto a frame and encodes it as a JPEG."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from stream.records import VerdictState

VERDICT_COLOURS_BGR = {
    VerdictState.FAKE: (40, 40, 230),
    VerdictState.REAL: (60, 180, 60),
    VerdictState.UNSURE: (0, 200, 230),
}


@dataclass(frozen=True)
class FaceLabel:
    track_id: int
    box_xyxy: tuple[float, float, float, float]
    verdict: VerdictState
    rolling_p_fake: float | None


def annotated_jpeg(
    frame_bgr: np.ndarray, labels: Sequence[FaceLabel], max_width: int = 640, quality: int = 80
) -> bytes:
    """A downscaled copy of the frame with every face drawn, as JPEG bytes."""
    scale = min(1.0, max_width / frame_bgr.shape[1])
    if scale < 1.0:
        canvas = cv2.resize(frame_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    else:
        canvas = frame_bgr.copy()  # frames are shared with other stages: never draw on the original
    for label in labels:
        x1, y1, x2, y2 = (round(v * scale) for v in label.box_xyxy)
        colour = VERDICT_COLOURS_BGR[label.verdict]
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
        score = "--" if label.rolling_p_fake is None else f"{label.rolling_p_fake:.2f}"
        text = f"#{label.track_id} {label.verdict.value} {score}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        top = max(0, y1 - th - 6)
        left = max(0, min(x1, canvas.shape[1] - tw - 6))  # keep the label inside the picture
        cv2.rectangle(canvas, (left, top), (left + tw + 6, top + th + 6), colour, -1)
        cv2.putText(canvas, text, (left + 3, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    ok, encoded = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"could not encode a {canvas.shape} frame as JPEG")
    return encoded.tobytes()


def thumbnail_jpeg(crop_bgr: np.ndarray, size: int = 96, quality: int = 85) -> bytes:
    """A square JPEG thumbnail of a face crop."""
    thumb = cv2.resize(crop_bgr, (size, size), interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", thumb, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"could not encode a {crop_bgr.shape} crop as JPEG")
    return encoded.tobytes()
