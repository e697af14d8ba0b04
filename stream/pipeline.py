"""The loop: pull frames from every source, detect, track, crop, encode crops in one batch, fill each face's ring,
score windows, keep verdicts, and write everything to the store; drop policy and stage timings live here."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from model.engine import Engine
from model.network import FrameOutputs
from model.preprocess import crop_face, crops_to_batch
from model.weights import LoadedModel
from stream.annotate import FaceLabel, annotated_jpeg, thumbnail_jpeg
from stream.clips import ClipRecorder, ClipSettings, FinishedClip
from stream.faces import Detection, FaceDetector
from stream.health import FpsMeter, StageTimer, StageTiming, StreamHealth
from stream.rings import RingStore
from stream.scores import FaceScorer, VerdictPolicy, VerdictState, WindowScore
from stream.sources import Frame, Source
from stream.store import StoreWriter
from stream.tracking import Track, Tracker

log = logging.getLogger("deepfake_stream")

MIN_WINDOW, MAX_WINDOW = 10, 100


@dataclass(frozen=True)
class PipelineConfig:
    window: int = 20
    stride: int = 1
    window_mode: str = "mean"
    max_batch: int = 16
    max_wait_ms: float = 0.0
    min_face_score: float = 0.5
    iou_threshold: float = 0.3
    max_missed_frames: int = 15
    thumb_size: int = 112  # ring crops: the evidence clips' pre-roll
    annotate_fps: float = 4.0
    health_interval_s: float = 1.0
    status_interval_s: float = 5.0
    policy: VerdictPolicy = field(default_factory=VerdictPolicy)
    clips: ClipSettings | None = None  # None: no evidence clips

    def __post_init__(self) -> None:
        if not MIN_WINDOW <= self.window <= MAX_WINDOW:
            raise ValueError(f"window must be {MIN_WINDOW}..{MAX_WINDOW} frames, got {self.window}")
        if self.stride < 1:
            raise ValueError(f"stride must be at least 1, got {self.stride}")
        if self.window_mode not in ("mean", "last"):
            raise ValueError(f"window mode must be mean or last, got {self.window_mode!r}")
        if self.max_batch < 1:
            raise ValueError(f"max batch must be at least 1, got {self.max_batch}")


@dataclass
class FaceTally:
    """What the pipeline knows about one face, for the store's faces table and the end-of-run summary."""

    stream_id: str
    track_id: int
    first_seen: float
    last_seen: float
    first_t_media: float | None
    last_t_media: float | None
    crops: int = 0
    scores: int = 0
    p_fake_sum: float = 0.0
    p_fake_max: float = 0.0
    verdict: VerdictState = VerdictState.UNSURE
    rolling_p_fake: float | None = None
    gone: bool = False
    thumbnail: bytes | None = None

    @property
    def mean_p_fake(self) -> float | None:
        return self.p_fake_sum / self.scores if self.scores else None


@dataclass(frozen=True)
class FaceSummary:
    stream_id: str
    track_id: int
    first_t_media: float | None
    last_t_media: float | None
    frames_scored: int
    crops: int
    verdict: str
    mean_p_fake: float | None
    max_p_fake: float | None


@dataclass
class _StreamWork:
    """Per-stream state owned by the pipeline thread."""

    source: Source
    detector: FaceDetector
    tracker: Tracker
    scorers: dict[int, FaceScorer] = field(default_factory=dict)
    fps_in: FpsMeter = field(default_factory=FpsMeter)
    fps_scored: FpsMeter = field(default_factory=FpsMeter)
    clock_origin: float = field(default_factory=time.monotonic)
    frames_processed: int = 0
    last_annotated: float = 0.0
    last_tracks: list[Track] = field(default_factory=list)
    announced_end: bool = False


@dataclass(frozen=True)
class _Crop:
    frame: Frame
    track: Track
    image_bgr: np.ndarray


class Pipeline:
    """Owns the per-stream detectors, trackers, rings and scorers; a launcher owns the sources and the store."""

    def __init__(
        self,
        engine: Engine,
        loaded: LoadedModel,
        store: StoreWriter,
        session_id: str,
        config: PipelineConfig | None = None,
        detector_factory: Callable[[], FaceDetector] | None = None,
    ) -> None:
        self.engine = engine
        self.loaded = loaded
        self.store = store
        self.session_id = session_id
        self.config = config or PipelineConfig()
        self.timer = StageTimer()
        self._detector_factory = detector_factory or (lambda: FaceDetector(min_score=self.config.min_face_score))
        self._streams: dict[str, _StreamWork] = {}
        self._rings = RingStore(
            capacity=self.config.window,
            feature_dim=2048,
            has_logits=loaded.arch == "seed",
            thumb_size=self.config.thumb_size,
        )
        self._faces: dict[tuple[str, int], FaceTally] = {}
        self._touched: set[tuple[str, int]] = set()
        # An uncalibrated model never gives a verdict, whatever the configuration says.
        self._policy = replace(self.config.policy, calibrated=loaded.calibrated)
        self._clips = ClipRecorder(self.config.clips) if self.config.clips else None
        self._stop = threading.Event()
        self._last_health = 0.0
        self._last_status = time.monotonic()

    # ---- launcher API -------------------------------------------------------------------------------------
    def add_source(self, source: Source) -> None:
        """Register an opened source and start its capture thread."""
        if source.stream_id in self._streams:
            raise ValueError(f"stream id {source.stream_id!r} is already in the pipeline")
        tracker = Tracker(source.stream_id, self.config.iou_threshold, self.config.max_missed_frames)
        self._streams[source.stream_id] = _StreamWork(source, self._detector_factory(), tracker)
        self.store.add_stream(self.session_id, source.stream_id, source.spec.display, source.spec.kind)
        source.timer = self.timer
        source.start()

    def remove_source(self, stream_id: str) -> None:
        work = self._streams.pop(stream_id)
        work.source.stop()
        work.source.join(5.0)
        self._close_stream(stream_id, work)

    def health(self) -> list[StreamHealth]:
        return [self._health_of(work) for work in self._streams.values()]

    @staticmethod
    def _health_of(work: _StreamWork) -> StreamHealth:
        now = time.monotonic()
        return StreamHealth(
            stream_id=work.source.stream_id,
            state=work.source.state,
            fps_in=work.fps_in.rate(now),
            fps_scored=work.fps_scored.rate(now),
            frames_dropped=work.source.dropped,
            reconnects=work.source.reconnects,
            last_error=work.source.last_error,
        )

    def stage_timings(self) -> list[StageTiming]:
        return self.timer.timings()

    def face_summaries(self) -> list[FaceSummary]:
        return [
            FaceSummary(
                t.stream_id,
                t.track_id,
                t.first_t_media,
                t.last_t_media,
                t.scores,
                t.crops,
                t.verdict.value,
                t.mean_p_fake,
                t.p_fake_max if t.scores else None,
            )
            for t in sorted(self._faces.values(), key=lambda t: (t.stream_id, t.track_id))
        ]

    def stop(self) -> None:
        self._stop.set()

    def run(self, duration_s: float | None = None) -> None:
        """Process until every source has finished, `duration_s` has passed, or `stop()` is called."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            while not self._stop.is_set() and self._streams:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                frames = self._collect_frames()
                if frames:
                    self._process(frames)
                else:
                    self._finish_ended_streams()
                    if all(w.source.finished for w in self._streams.values()):
                        break
                    time.sleep(0.002)
                self._report_periodically()
        finally:
            self.close()

    def close(self) -> None:
        """Stop every source, mark every face gone, write final health and commit. Safe to call twice."""
        for work in self._streams.values():
            work.source.stop()
        for stream_id, work in list(self._streams.items()):
            work.source.join(5.0)
            self._close_stream(stream_id, work)
        self._streams.clear()
        if self._clips is not None:
            for finished in self._clips.finish_all():
                self._link_clip(finished)
        self.store.commit()

    # ---- the loop ----------------------------------------------------------------------------------------
    def _collect_frames(self) -> list[Frame]:
        frames = [f for w in self._streams.values() if (f := w.source.buffer.take()) is not None]
        if frames and self.config.max_wait_ms > 0 and len(frames) < len(self._streams):
            # Give the other live streams a moment, so their crops share this batch.
            time.sleep(self.config.max_wait_ms / 1000)
            have = {f.stream_id for f in frames}
            frames += [
                f for sid, w in self._streams.items() if sid not in have and (f := w.source.buffer.take()) is not None
            ]
        return frames

    def _process(self, frames: list[Frame]) -> None:
        crops: list[_Crop] = []
        for frame in frames:
            work = self._streams[frame.stream_id]
            work.fps_in.tick()
            work.frames_processed += 1
            crops.extend(self._detect_and_track(work, frame))
        self._encode_and_score(crops)
        for key in self._touched:
            self._write_face(self._faces[key])
        self._touched.clear()
        now = time.time()
        for frame in frames:
            self._evict_lost(self._streams[frame.stream_id])
            self._annotate(self._streams[frame.stream_id], frame, now)
        began = time.perf_counter()
        self.store.commit()
        self.timer.record("store", time.perf_counter() - began)

    def _detect_and_track(self, work: _StreamWork, frame: Frame) -> list[_Crop]:
        began = time.perf_counter()
        # MediaPipe's VIDEO mode needs increasing timestamps; RTSP pts can be missing, so use our own clock.
        timestamp_ms = int((time.monotonic() - work.clock_origin) * 1000)
        detections: list[Detection] = work.detector.detect(frame.image_bgr, timestamp_ms)
        mid = time.perf_counter()
        tracks = work.tracker.update(detections, frame.index)
        self.timer.record("detect", mid - began)
        self.timer.record("track", time.perf_counter() - mid)
        work.last_tracks = tracks
        crops = []
        for track in tracks:
            image = crop_face(frame.image_bgr, track.box)
            if image is not None:  # never feed the whole frame when a box falls outside it
                crops.append(_Crop(frame, track, image))
        return crops

    def _encode_and_score(self, crops: list[_Crop]) -> None:
        due: list[tuple[_Crop, FaceTally]] = []
        for start in range(0, len(crops), self.config.max_batch):
            chunk = crops[start : start + self.config.max_batch]
            began = time.perf_counter()
            batch = crops_to_batch([c.image_bgr for c in chunk], self.loaded.preprocessing, self.engine.device)
            mid = time.perf_counter()
            outputs = self.engine.encode(batch)
            self.timer.record("preprocess", mid - began)
            self.timer.record("encode", time.perf_counter() - mid)
            features = outputs.features.numpy()
            logits = None if outputs.logits is None else outputs.logits.numpy()
            for row, crop in enumerate(chunk):
                ring = self._rings.get_or_create(crop.frame.stream_id, crop.track.track_id)
                ring.push(
                    features[row],
                    None if logits is None else logits[row],
                    crop.image_bgr,
                    crop.frame.index,
                    crop.frame.t_media,
                    crop.frame.t_capture,
                )
                tally = self._tally(crop)
                if self._clips is not None:
                    self._link_clip(self._clips.feed(crop.frame.stream_id, crop.track.track_id, crop.image_bgr))
                if len(ring) >= self.config.window and ring.pushed_total % self.config.stride == 0:
                    due.append((crop, tally))
        if due:
            self._score(due)

    def _tally(self, crop: _Crop) -> FaceTally:
        key = (crop.frame.stream_id, crop.track.track_id)
        tally = self._faces.get(key)
        if tally is None or tally.gone:
            tally = FaceTally(
                crop.frame.stream_id,
                crop.track.track_id,
                first_seen=crop.frame.t_capture,
                last_seen=crop.frame.t_capture,
                first_t_media=crop.frame.t_media,
                last_t_media=crop.frame.t_media,
                thumbnail=thumbnail_jpeg(crop.image_bgr),
            )
            self._faces[key] = tally
        tally.last_seen, tally.last_t_media = crop.frame.t_capture, crop.frame.t_media
        tally.crops += 1
        self._touched.add(key)
        return tally

    def _score(self, due: list[tuple[_Crop, FaceTally]]) -> None:
        began = time.perf_counter()
        windows = [
            self._rings.get_or_create(c.frame.stream_id, c.track.track_id).window(self.config.window) for c, _ in due
        ]
        stacked = FrameOutputs(
            features=torch.from_numpy(np.stack([w.features for w in windows])),
            logits=None if windows[0].logits is None else torch.from_numpy(np.stack([w.logits for w in windows])),
        )
        p_fakes = self.engine.score(stacked, self.config.window_mode).tolist()
        t_scored = time.time()
        self.timer.record("score", time.perf_counter() - began)
        rows = []
        for (crop, tally), p_fake in zip(due, p_fakes, strict=True):
            frame = crop.frame
            rows.append(
                WindowScore(
                    self.session_id,
                    frame.stream_id,
                    crop.track.track_id,
                    frame.index,
                    frame.t_media,
                    self.config.window,
                    float(p_fake),
                    frame.t_capture,
                    t_scored,
                )
            )
            self.timer.record("latency", t_scored - frame.t_capture)
            self._streams[frame.stream_id].fps_scored.tick()
            self._update_verdict(crop, tally, float(p_fake), t_scored)
        self.store.write_scores(rows)

    def _update_verdict(self, crop: _Crop, tally: FaceTally, p_fake: float, t: float) -> None:
        work = self._streams[crop.frame.stream_id]
        scorer = work.scorers.get(crop.track.track_id)
        if scorer is None:
            scorer = work.scorers[crop.track.track_id] = FaceScorer(
                crop.frame.stream_id, crop.track.track_id, self._policy
            )
        update = scorer.update(p_fake, t)
        tally.scores += 1
        tally.p_fake_sum += p_fake
        tally.p_fake_max = max(tally.p_fake_max, p_fake)
        tally.rolling_p_fake = update.rolling_p_fake
        if update.changed:
            log.info(
                "%s face #%d: %s -> %s (rolling p_fake %.2f)",
                crop.frame.stream_id,
                crop.track.track_id,
                tally.verdict.value,
                update.verdict.state.value,
                update.rolling_p_fake,
            )
            self.store.write_verdict(self.session_id, update.verdict)
        tally.verdict = update.verdict.state
        if update.alert is not None:
            log.warning(
                "ALERT %s face #%d turned FAKE (p_fake %.2f)", crop.frame.stream_id, crop.track.track_id, p_fake
            )
            alert_id = self.store.write_alert(self.session_id, replace(update.alert, t_media=crop.frame.t_media))
            if self._clips is not None:
                ring = self._rings.get_or_create(crop.frame.stream_id, crop.track.track_id)
                self._clips.start(alert_id, crop.frame.stream_id, crop.track.track_id, ring.thumbnails())

    def _write_face(self, tally: FaceTally) -> None:
        thumbnail, tally.thumbnail = tally.thumbnail, None  # the store keeps the first thumbnail it is given
        self.store.upsert_face(
            self.session_id,
            tally.stream_id,
            tally.track_id,
            first_seen=tally.first_seen,
            last_seen=tally.last_seen,
            first_t_media=tally.first_t_media,
            last_t_media=tally.last_t_media,
            state="gone" if tally.gone else "live",
            verdict=tally.verdict,
            rolling_p_fake=tally.rolling_p_fake,
            frames_scored=tally.scores,
            thumbnail_jpeg=thumbnail,
        )

    def _link_clip(self, finished: FinishedClip | None) -> None:
        if finished is not None:
            self.store.set_alert_clip(finished.alert_id, str(finished.path))
            log.info("evidence clip for alert %d: %s (%d frames)", finished.alert_id, finished.path, finished.frames)

    def _evict_lost(self, work: _StreamWork, evicted: list[int] | None = None) -> None:
        for track_id in work.tracker.take_evicted() if evicted is None else evicted:
            if self._clips is not None:
                self._link_clip(self._clips.finish(work.source.stream_id, track_id))
            self._rings.drop(work.source.stream_id, track_id)
            work.scorers.pop(track_id, None)
            tally = self._faces.get((work.source.stream_id, track_id))
            if tally is not None and not tally.gone:
                tally.gone = True
                self._write_face(tally)

    def _annotate(self, work: _StreamWork, frame: Frame, now: float) -> None:
        if now - work.last_annotated < 1.0 / self.config.annotate_fps:
            return
        began = time.perf_counter()
        labels = []
        for track in work.last_tracks:
            tally = self._faces.get((frame.stream_id, track.track_id))
            verdict = tally.verdict if tally else VerdictState.UNSURE
            labels.append(FaceLabel(track.track_id, track.box, verdict, tally.rolling_p_fake if tally else None))
        self.store.write_frame(self.session_id, frame.stream_id, annotated_jpeg(frame.image_bgr, labels), now)
        work.last_annotated = now
        self.timer.record("annotate", time.perf_counter() - began)

    def _finish_ended_streams(self) -> None:
        for work in self._streams.values():
            if work.source.finished and not work.announced_end:
                work.announced_end = True
                self._evict_lost(work, work.tracker.evict_all())
                self._write_health(work)

    def _close_stream(self, stream_id: str, work: _StreamWork) -> None:
        self._evict_lost(work, work.tracker.evict_all())
        self._rings.drop_stream(stream_id)
        self._write_health(work)
        work.detector.close()

    def _write_health(self, work: _StreamWork) -> None:
        self.store.write_health(self.session_id, self._health_of(work), time.time())

    def _report_periodically(self) -> None:
        now = time.monotonic()
        if now - self._last_health >= self.config.health_interval_s:
            self._last_health = now
            for health in self.health():
                self.store.write_health(self.session_id, health, time.time())
        if now - self._last_status >= self.config.status_interval_s:
            self._last_status = now
            for line in self.status_lines():
                log.info(line)

    def status_lines(self) -> list[str]:
        lines = []
        for health in self.health():
            work = self._streams[health.stream_id]
            faces = len(work.last_tracks)
            progress = ""
            expected = work.source.expected_frames
            if expected:
                done = min(1.0, work.frames_processed / expected)
                bar = "#" * round(20 * done) + "-" * (20 - round(20 * done))
                progress = f" [{bar}] {100 * done:.0f}% (frame {work.frames_processed}/{expected})"
            lines.append(
                f"{health.stream_id} [{health.state.value}]: in {health.fps_in:.1f} fps, "
                f"scored {health.fps_scored:.1f} windows/s, {faces} face{'s' if faces != 1 else ''}, "
                f"{health.frames_dropped} dropped{progress}"
            )
        return lines
