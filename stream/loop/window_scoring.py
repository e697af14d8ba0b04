"""One frame's encoded crops into their faces' rings, and the windows then due scored: window scores, verdicts,
alerts and evidence clips, in the order the frame's crops came. Called once per frame (or per iteration without
look-ahead), so a due window is always scored from its ring as it stood after that frame's push."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from stream.config import ModelSettings
from stream.faces.cropper import FaceCrop
from stream.loop.crop_encoder import CropEncoder
from stream.loop.evidence_clips import ClipRecorder
from stream.loop.face_state import Face
from stream.loop.stream_state import LoopStream
from stream.records import Event, WindowScore
from stream.timing import StageTimer


class WindowScoring:
    """Pushes encoded crops and scores due windows for the loop; appends what happened to `events` (the loop's)."""

    def __init__(
        self,
        session_id: str,
        model: ModelSettings,
        encoder: CropEncoder,
        clips: ClipRecorder | None,
        timer: StageTimer,
        streams: dict[str, LoopStream],
        events: list[Event],
    ) -> None:
        self._session_id = session_id
        self._model = model
        self._encoder = encoder
        self._clips = clips
        self._timer = timer
        self._streams = streams
        self._events = events

    def push(
        self,
        crops: list[FaceCrop],
        faces: list[Face],
        rows: dict[int, int],
        features: np.ndarray | None,
        logits: np.ndarray | None,
    ) -> None:
        """Crop `i` was encoded into row `rows[i]` of `features`/`logits`, or skipped when it has no row."""
        window, stride = self._model.window, self._model.stride
        due: list[tuple[FaceCrop, Face]] = []
        for index, (crop, face) in enumerate(zip(crops, faces, strict=True)):
            work = self._streams[crop.frame.stream_id]
            row = rows.get(index)
            if row is None:
                face.skip_crop(crop.frame)
                work.crops_skipped += 1
                continue
            assert features is not None
            face.add_crop(crop.frame, crop.image_bgr, features[row], None if logits is None else logits[row])
            work.crops_encoded += 1
            if (finished := face.feed_clip(crop.image_bgr)) is not None:
                self._events.append(finished)
            if face.window_due(window, stride):
                due.append((crop, face))
        if due:
            self._score(due)

    def _score(self, due: list[tuple[FaceCrop, Face]]) -> None:
        window = self._model.window
        p_fakes = self._encoder.score([face.ring.window(window) for _, face in due], self._model.window_mode)
        t_scored = time.time()
        for (crop, face), p_fake in zip(due, p_fakes, strict=True):
            frame = crop.frame
            self._events.append(
                WindowScore(
                    self._session_id,
                    frame.stream_id,
                    face.track_id,
                    frame.index,
                    frame.t_media,
                    window,
                    p_fake,
                    frame.t_capture,
                    t_scored,
                )
            )
            self._timer.record("latency", t_scored - frame.t_capture)
            self._streams[frame.stream_id].scored_window(face.track_id)
            update = face.add_score(p_fake, t_scored)
            if update.changed:
                self._events.append(update.verdict)
            if update.alert is not None:
                alert = replace(update.alert, t_media=frame.t_media)
                self._events.append(alert)
                if self._clips is not None:
                    if face.clip is not None:
                        self._events.append(face.finish_clip())
                    face.clip = self._clips.start(alert, face.ring.thumbnails())
