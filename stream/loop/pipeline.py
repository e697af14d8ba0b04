"""The loop: drain the command inbox, take the newest frame of every stream, cut its faces, encode the crops in
one batch, score the faces whose window is due, and send what happened to the sinks; publish health snapshots.

Under overload (stream/overload.py) an iteration lasts at most a tracking period (`pipeline.min_track_fps`): the
live crops encoded are those that fit in what is left of it, chosen round-robin across faces, and the frames of
each live camera in between are thinned evenly by the iterations themselves.

A file or an upload (never beside a live stream) has its faces found ahead on its own thread (stream/loop/lookahead.py)
and the crops of many of its frames encoded in one batch.

The loop thread owns all of its state. Other threads post commands (`add_source`, `remove_source`, `stop`) and
read the published snapshots (`health`, `faces`, `face_summaries`, `stage_timings`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import replace

import numpy as np
from torch import Tensor

from model.engines import Engine
from model.spread import spread_of
from model.weights import LoadedModel
from stream.capture.sources import Source
from stream.config import Settings
from stream.faces.cropper import FaceCrop, build_cropper
from stream.faces.mediapipe_detectors import FaceDetector
from stream.loop.annotate import FaceLabel, annotated_jpeg
from stream.loop.crop_encoder import CropEncoder
from stream.loop.ended import EndedHealth
from stream.loop.evidence_clips import ClipRecorder
from stream.loop.face_state import Face, FaceRegistry, RingShape
from stream.loop.inbox import AddSource, Inbox, RemoveSource, Stop, answer
from stream.loop.lookahead import FoundFrame, LookAhead
from stream.loop.overload import ACTIVE_S, CONTENTION_S, BackgroundGate, OverloadMeter, crops_that_fit, round_robin
from stream.loop.status_lines import StatusPrinter, engine_line
from stream.loop.stream_state import LoopStream
from stream.loop.verdicts import threshold_line, with_checkpoint
from stream.loop.window_scoring import WindowScoring
from stream.records import (
    AnnotatedFrame,
    EncodedBatch,
    Event,
    FaceSummary,
    FaceUpdate,
    Frame,
    StageTiming,
    StageTimings,
    StopReason,
    StreamHealth,
    StreamInfo,
    Track,
    VerdictState,
)
from stream.sinks.protocol import Sink, SinkFanout
from stream.timing import StageTimer

log = logging.getLogger("deepfake_stream")

FEATURE_DIM = 2048
SOURCE_JOIN_S = 5.0


class Pipeline:
    """The loop over every stream. A launcher (the `Detector`) builds it with an engine, settings and sinks."""

    def __init__(
        self,
        engine: Engine,
        loaded: LoadedModel,
        session_id: str,
        settings: Settings,
        sinks: Sequence[Sink],
        detector_factory: Callable[[], FaceDetector] | None = None,
        on_sink_error: Callable[[str, str], None] | None = None,
    ) -> None:
        """`on_sink_error(sink, error type)`: told each time a non-critical sink fails (see `SinkFanout`)."""
        self.session_id = session_id
        self.settings = settings
        self.timer = StageTimer()
        self._loaded = loaded
        self._sinks = SinkFanout(sinks, on_sink_error)
        self._detector_factory = detector_factory
        self._encoder = CropEncoder(engine, loaded.preprocessing, settings.pipeline.max_batch, self.timer)
        self._engine_name = engine.name
        self._on_cpu = engine.device.type == "cpu"
        self._engine_rate = engine.choice.crops_per_s if engine.choice else None
        # An uncalibrated model never gives a verdict, whatever the configuration says.
        policy = with_checkpoint(replace(settings.verdicts, calibrated=loaded.calibrated), loaded.threshold)
        self._threshold_line = threshold_line(policy, spread_of(loaded.metrics))
        self._printer = StatusPrinter(engine.name, self._engine_rate, self._threshold_line)
        shape = RingShape(settings.model.window, FEATURE_DIM, loaded.arch == "seed", settings.pipeline.thumb_size)
        self._faces = FaceRegistry(shape, policy)
        self._clips = ClipRecorder(settings.clips) if settings.clips.enabled else None
        # What recent iterations took from the end of their encoding to their end (perf_counter seconds, a moving
        # average), and this iteration's start and end of encoding.
        self._tail_s = 0.0
        self._began = self._encoded_at = 0.0
        self._contended_until = 0.0  # monotonic: live crops were skipped lately (stream/overload.py)
        self._gate = BackgroundGate(settings.pipeline.upload_share)  # when uploads may run beside live streams
        self._iteration_live: bool | None = None  # this iteration had live frames, upload frames alone, or neither
        self._inbox = Inbox()
        self._inbox_lock = threading.Lock()  # a command posted after close() is refused, never left unanswered
        self._answered_after_flush: list[Future[None]] = []
        self._next_track_ids: dict[str, int] = {}  # a stream id added again continues its ids: none is reused
        self._streams: dict[str, LoopStream] = {}
        self._stopped_sources: list[Source] = []
        self._events: list[Event] = []
        self._scoring = WindowScoring(
            session_id, settings.model, self._encoder, self._clips, self.timer, self._streams, self._events
        )
        self._ended_health = EndedHealth(settings.service.ended_keep_s)  # pruned after it
        self._last_health = 0.0
        self._last_status = time.monotonic()
        self._closed = False
        self._stop_reason: StopReason | None = None  # what ended the loop, once something did
        # Snapshots for other threads: replaced whole, never mutated.
        self._health: tuple[StreamHealth, ...] = ()
        self._live_faces: tuple[FaceUpdate, ...] = ()
        self._summaries: tuple[FaceSummary, ...] = ()

    # ---- commands and snapshots (any thread) -----------------------------------------------------------------
    def add_source(self, source: Source) -> Future[None]:
        """Ask the loop to take an opened source; the future fails with ValueError if its stream id is taken."""
        command = AddSource(source)
        self._post(command)
        return command.done

    def remove_source(self, stream_id: str, reason: StopReason = StopReason.API) -> Future[None]:
        """Ask the loop to end a stream; the future is done once its faces and final health reached the sinks."""
        command = RemoveSource(stream_id, reason=reason)
        self._post(command)
        return command.done

    def stop(self, reason: StopReason = StopReason.RUN_ENDED) -> None:
        """End the loop; files and uploads not yet at their end are interrupted, by `reason`."""
        self._inbox.post(Stop(reason))

    def _post(self, command: AddSource | RemoveSource) -> None:
        with self._inbox_lock:
            if self._closed:
                answer(command.done, RuntimeError("the detector has stopped"))
                return
            self._inbox.post(command)

    def health(self) -> list[StreamHealth]:
        return list(self._health)

    def faces(self) -> list[FaceUpdate]:
        """The live faces as of the last published snapshot."""
        return list(self._live_faces)

    def face_summaries(self) -> list[FaceSummary]:
        """Every face seen so far (gone or live) as of the last published snapshot."""
        return list(self._summaries)

    def stage_timings(self) -> list[StageTiming]:
        return self.timer.timings()

    # ---- the loop ----------------------------------------------------------------------------------------
    def run(self, duration_s: float | None = None, serve: bool = False) -> None:
        """Process until `stop()`, until `duration_s` has passed, or (unless `serve`) until every stream has
        ended. A serving loop keeps running with no streams, waiting for commands."""
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            while self._handle_commands():
                if deadline is not None and time.monotonic() >= deadline:
                    self._stop_reason = StopReason.DURATION
                    break
                frames, found = self._collect_frames()
                busy = bool(frames or found)
                if busy:
                    self._process(frames, found)
                    # Their slots are free only once no found frame is referenced here: the bound holds.
                    taken = [item.frame.stream_id for item in found]
                    frames, found = [], []
                    for stream_id in taken:
                        self._streams[stream_id].release_found()
                # Every iteration: a busy live stream must not keep an ended file open (and reported).
                self._end_finished_streams()
                if not busy:
                    if not self._streams and not serve:
                        break
                    time.sleep(0.002)
                self._report_periodically()
                self._flush()
                if busy:
                    self._timed_iteration(time.perf_counter())
        finally:
            self.close()

    def close(self) -> None:
        """Stop every source, mark every face gone, send the final health. Safe to call twice."""
        with self._inbox_lock:
            if self._closed:
                return
            self._closed = True
        for work in self._streams.values():
            work.source.stop()
        for stream_id in list(self._streams):
            self._close_stream(stream_id, self._stop_reason or StopReason.RUN_ENDED)
        for command in self._inbox.drain():
            if isinstance(command, AddSource | RemoveSource):
                answer(command.done, RuntimeError("the detector has stopped"))
        for source in self._stopped_sources:
            source.join(SOURCE_JOIN_S)
        self._publish()
        self._flush()
        self._sinks.close()

    def _handle_commands(self) -> bool:
        """Apply posted commands; False when the loop should end."""
        keep_running = True
        for command in self._inbox.drain():
            match command:
                case AddSource(source=source, done=done):
                    if done.cancelled():  # its caller gave up waiting: do not start what nobody will stop
                        source.stop()
                        continue
                    if source.stream_id in self._streams:
                        answer(done, ValueError(f"stream id {source.stream_id!r} is already in the pipeline"))
                        continue
                    self._start_stream(source)
                    answer(done)
                case RemoveSource(stream_id=stream_id, done=done, reason=reason):
                    if stream_id not in self._streams:
                        answer(done, KeyError(f"no stream {stream_id!r} in the pipeline"))
                        continue
                    self._streams[stream_id].source.stop()
                    self._close_stream(stream_id, reason)
                    self._answered_after_flush.append(done)
                case Stop(reason=reason):
                    self._stop_reason = self._stop_reason or reason
                    keep_running = False
        return keep_running

    def _start_stream(self, source: Source) -> None:
        first_id = self._next_track_ids.get(source.stream_id, 1)
        cropper = build_cropper(source.stream_id, self.settings, self.timer, self._detector_factory, first_id)
        overload = OverloadMeter(self.settings.pipeline.overload_window_s)
        depth = self.settings.pipeline.lookahead_frames
        resize = self._encoder.resized if self._on_cpu else None  # crops resized on the finder's thread
        ahead = LookAhead(source, cropper, depth, resize) if depth > 0 and not source.live else None
        self._streams[source.stream_id] = LoopStream(
            source, cropper, live=source.live, background=source.spec.background, lookahead=ahead, overload=overload
        )
        self._ended_health.pop(source.stream_id, None)
        self._events.append(StreamInfo(source.stream_id, source.spec.display, source.spec.kind))
        source.timer = self.timer
        source.start()
        self._set_depths()
        if ahead is not None:
            ahead.start()
        self._publish()

    def _set_depths(self) -> None:
        """Look-ahead is off while a live stream runs: the finder parks and the loop finds a file's faces itself."""
        live = any(w.live for w in self._streams.values())
        for work in self._streams.values():
            if work.lookahead is not None:
                work.lookahead.set_depth(0 if live else self.settings.pipeline.lookahead_frames)

    def _collect_frames(self) -> tuple[list[Frame], list[FoundFrame]]:
        """This iteration's frames to find faces in, and the frames found ahead whose crops join its batch."""
        background = [w for w in self._streams.values() if w.background]
        if background and self._gate.owed():  # an iteration of their own for the uploads' share (upload_share.py)
            owed, owed_found = self._take(background)
            if owed or owed_found:
                return owed, owed_found
        foreground = {sid: w for sid, w in self._streams.items() if not w.background}
        frames, found = self._take(foreground.values())
        if frames and self.settings.pipeline.max_wait_ms > 0 and len(frames) < len(foreground):
            # Give the other live streams a moment, so their crops share this batch.
            time.sleep(self.settings.pipeline.max_wait_ms / 1000)
            have = {f.stream_id for f in frames}
            late = [w for sid, w in foreground.items() if sid not in have and w.lookahead is None]  # none found ahead
            frames += [f for w in late if (f := w.source.buffer.take()) is not None]
        if len(foreground) < len(self._streams) and self._background_may_run(frames):
            more, more_found = self._take(w for w in self._streams.values() if w.background)
            frames, found = frames + more, found + more_found
        return frames, found

    def _take(self, works: Iterable[LoopStream]) -> tuple[list[Frame], list[FoundFrame]]:
        frames: list[Frame] = []
        found: list[FoundFrame] = []
        live = any(w.live for w in self._streams.values())
        most = 1 if live else self.settings.pipeline.lookahead_frames
        for work in works:
            if work.lookahead is not None and not (live and work.lookahead.idle):
                found += work.lookahead.take(self.settings.pipeline.max_batch, most)
            elif (frame := work.source.buffer.take()) is not None:
                frames.append(frame)
        return frames, found

    def _background_may_run(self, frames: list[Frame]) -> bool:
        """Uploads' frames join this iteration when no live stream runs; beside live streams, only in an iteration
        of their own that fits in the time the cameras leave (stream/overload.py, `background_fits`)."""
        live = [w for w in self._streams.values() if w.live]
        if not live:
            return True
        if any(self._streams[f.stream_id].live for f in frames) or time.monotonic() < self._contended_until:
            return False
        cameras = [(w.last_processed[1], w.interval_s) for w in live if w.last_processed is not None and w.interval_s]
        return self._gate.may_run(time.time(), cameras)

    def _timed_iteration(self, ended: float) -> None:
        if self._encoded_at > self._began:
            self._tail_s += 0.2 * (ended - self._encoded_at - self._tail_s)
        if self._iteration_live is not None:
            self._gate.took(self._iteration_live, ended - self._began)

    def _process(self, frames: list[Frame], found: list[FoundFrame]) -> None:
        """Find the faces of `frames` (streams without look-ahead), encode their crops and those of the `found`
        frames in one batch, then push and score frame by frame: `frames` together, as before, then each found one
        (its evictions first, its due windows scored right after its push)."""
        self._began = time.perf_counter()
        min_track_fps = self.settings.pipeline.min_track_fps
        crops: list[FaceCrop] = []
        kinds = [self._streams[f.stream_id] for f in frames] + [self._streams[x.frame.stream_id] for x in found]
        live, background = any(w.live for w in kinds), all(w.background for w in kinds)
        first = any(w.frames_processed == 0 for w in kinds)  # a stream's first frame pays for warming up: not timed
        self._iteration_live = None if first else (True if live else (False if background else None))
        for frame in frames:
            work = self._streams[frame.stream_id]
            work.took_frame()
            if work.live:
                work.note_interval(frame)
                work.count_thinned(frame, min_track_fps, self._gate)
            crops.extend(work.cropper.crops(frame))
            work.tracks = tuple(work.cropper.last_tracks)
            # Before this frame's faces are encoded, so a face's gone-update precedes a newcomer's first one.
            self._evict(frame.stream_id, work.cropper.take_evicted())
        faces = [self._faces.see(c.frame, c.track.track_id, c.image_bgr) for c in crops]
        chosen = self._choose(crops, faces) if crops else []
        images: list[np.ndarray | Tensor] = [crops[i].image_bgr for i in chosen]
        images += [image for item in found for image in item.images]
        features, logits = self._encode(images)
        self._scoring.push(crops, faces, {index: row for row, index in enumerate(chosen)}, features, logits)
        self._events.extend(face.update() for face in {(f.stream_id, f.track_id): f for f in faces}.values())
        row = len(chosen)
        now = time.time()
        for item in found:  # as if each had an iteration of its own
            work = self._streams[item.frame.stream_id]
            work.took_frame(item.taken_at)
            self._evict(item.frame.stream_id, list(item.evicted))
            seen = [self._faces.see(c.frame, c.track.track_id, c.image_bgr) for c in item.crops]
            self._scoring.push(list(item.crops), seen, {i: row + i for i in range(len(seen))}, features, logits)
            self._events.extend(face.update() for face in {(f.stream_id, f.track_id): f for f in seen}.values())
            row += len(seen)
            work.tracks = item.tracks
            self._annotate(work, item.frame, work.tracks, now)
        for frame in frames:
            work = self._streams[frame.stream_id]
            self._annotate(work, frame, work.tracks, now)

    def _encode(self, images: list[np.ndarray | Tensor]) -> tuple[np.ndarray | None, np.ndarray | None]:
        if not images:
            return None, None
        began = time.perf_counter()
        features, logits = self._encoder.encode(images)
        self._encoded_at = time.perf_counter()
        self._events.append(EncodedBatch(len(images), self._encoded_at - began))
        return features, logits

    def _choose(self, crops: list[FaceCrop], faces: list[Face]) -> list[int]:
        """The crops to encode this iteration, in crop order: every file crop, and the live crops that fit in the
        encode budget, round-robin across every live face of every stream (stream/overload.py)."""
        live = [i for i, crop in enumerate(crops) if self._streams[crop.frame.stream_id].live]
        if not live:
            return list(range(len(crops)))
        files = len(crops) - len(live)  # always encoded, in the same calls
        fit = crops_that_fit(self._encode_budget_s(), lambda n: self._encoder.seconds_for(files + n), len(live))
        floor = self._share_floor([faces[i] for i in live])
        contended = time.monotonic() < self._contended_until
        shares, turns = [faces[i].share for i in live], [faces[i].turn for i in live]
        picked = [live[j] for j in round_robin(shares, turns, fit, floor, contended)]
        self._faces.requeue(faces[i] for i in picked)
        skipped = set(live) - set(picked)
        if skipped:
            self._contended_until = time.monotonic() + CONTENTION_S
        return [i for i in range(len(crops)) if i not in skipped]

    def _share_floor(self, present: list[Face]) -> int:
        """The lowest round-robin share among live streams' faces seen in the last `ACTIVE_S`; a present face that
        is new, or back after longer, joins at it (no burst of crops for a face that was away)."""
        now = time.time()
        recent = [
            face
            for face in self._faces.live()
            if self._streams[face.stream_id].live
            and face.crops + face.crops_skipped > 0
            and now - face.last_seen < ACTIVE_S
        ]
        floor = min((face.share for face in recent), default=0)
        seen_lately = {id(face) for face in recent}
        for face in present:
            if id(face) not in seen_lately:
                face.share = max(face.share, floor)
        return floor

    def _encode_budget_s(self) -> float:
        """Seconds the encoder may spend on this iteration's crops: `pipeline.encode_budget_ms`, else what the
        iteration's other work (so far, and after the encoding as lately) leaves of a tracking period."""
        fixed = self.settings.pipeline.encode_budget_ms
        if fixed > 0:
            return fixed / 1000
        spent = time.perf_counter() - self._began
        return 1.0 / self.settings.pipeline.min_track_fps - spent - self._tail_s

    def _evict(self, stream_id: str, track_ids: list[int]) -> None:
        for track_id in track_ids:
            face = self._faces.evict(stream_id, track_id)
            if face is None:
                continue
            if (finished := face.finish_clip()) is not None:
                self._events.append(finished)
            self._events.append(face.update())

    def _annotate(self, work: LoopStream, frame: Frame, tracks: tuple[Track, ...], now: float) -> None:
        if now - work.last_annotated < 1.0 / self.settings.pipeline.annotate_fps:
            return
        began = time.perf_counter()
        labels = []
        for track in tracks:
            face = self._faces.get(frame.stream_id, track.track_id)
            verdict = face.verdict if face else VerdictState.UNSURE
            labels.append(FaceLabel(track.track_id, track.box, verdict, face.rolling_p_fake if face else None))
        self._events.append(AnnotatedFrame(frame.stream_id, now, annotated_jpeg(frame.image_bgr, labels)))
        work.last_annotated = now
        self.timer.record("annotate", time.perf_counter() - began)

    def _end_finished_streams(self) -> None:
        for stream_id in [sid for sid, work in self._streams.items() if work.finished]:
            self._close_stream(stream_id)

    def _close_stream(self, stream_id: str, stopped_by: StopReason | None = None) -> None:
        """Forget a stream whose source ended, or that was stopped (`stopped_by`): its faces go, its last health
        stays."""
        work = self._streams.pop(stream_id)
        if work.lookahead is None or work.lookahead.stop(SOURCE_JOIN_S):  # the cropper is the loop's again
            self._evict(stream_id, work.cropper.evict_all())
            self._next_track_ids[stream_id] = work.cropper.next_track_id
            work.cropper.close()
        else:  # a finder stuck past the join: leave its cropper alone, forget its faces here
            log.warning("face finding of %s did not stop within %.0f s", stream_id, SOURCE_JOIN_S)
            self._evict(stream_id, [face.track_id for face in self._faces.live() if face.stream_id == stream_id])
        self._stopped_sources.append(work.source)
        self._set_depths()
        state, reason = work.final_state(stopped_by)
        final = replace(work.final_health(), state=state, stop_reason=reason)
        self._ended_health[stream_id] = final
        self._events.append(final)
        self._publish()

    def _report_periodically(self) -> None:
        now = time.monotonic()
        settings = self.settings.pipeline
        if now - self._last_health >= settings.health_interval_s:
            self._last_health = now
            self._events.extend(work.health() for work in self._streams.values())
            self._events.append(StageTimings(time.time(), tuple(self.timer.timings())))
            self._publish()
        if now - self._last_status >= settings.status_interval_s:
            self._last_status = now
            for line in self._printer.lines(self._stream_lines(), self._encoder.seconds_for(1)):
                log.info(line)

    def status_lines(self) -> list[str]:
        """Every status line as of now: the encoder's, the threshold's and one per stream."""
        engine = engine_line(self._engine_name, self._engine_rate, self._encoder.seconds_for(1))
        return [engine, self._threshold_line, *self._stream_lines()]

    def _stream_lines(self) -> list[str]:
        return [work.status_line(self.settings.pipeline) for work in self._streams.values()]

    def _publish(self) -> None:
        live = {sid: work.health() for sid, work in self._streams.items()}
        self._health = tuple(sorted({**self._ended_health.current(), **live}.values(), key=lambda h: h.stream_id))
        self._live_faces = tuple(face.snapshot() for face in self._faces.live())
        self._summaries = tuple(self._faces.summaries())

    def _flush(self) -> None:
        if self._events:
            events = list(self._events)
            self._events.clear()  # the same list: the window scoring appends to it
            began = time.perf_counter()
            self._sinks.send(events)
            self.timer.record("store", time.perf_counter() - began)
        answered, self._answered_after_flush = self._answered_after_flush, []
        for done in answered:
            answer(done)
