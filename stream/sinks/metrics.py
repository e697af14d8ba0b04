"""Prometheus metrics: a sink that turns the loop's events into counters, gauges and histograms in its own registry
(the service serves them as Prometheus text at `GET /metrics`).

Every series, labelled by `stream` where it is per stream:

- `deepfake_model_info{session_id, checkpoint, engine, device, calibrated, window}`: what this detector runs.
- `deepfake_stream_frames_read_total`: frames the source delivered; `..._frames_dropped_total`: frames a live
  source's buffer dropped before the loop took them (thinned ones included); `..._frames_thinned_total`: of
  those, the ones left out evenly under overload; `..._frames_scored_total`: frames with at least one window
  score; `..._windows_scored_total`: window scores (one per face per scored frame);
  `..._crops_encoded_total` / `..._crops_skipped_total`; `..._reconnects_total`.
  The source's own counts arrive with the loop's health reports (every `pipeline.health_interval_s`); scores
  are counted as they are made.
- `deepfake_stream_state{stream, state}`: 1 for the stream's current state, 0 for the others;
  `deepfake_stream_fps_in` / `deepfake_stream_fps_scored`: the rates of the last health report.
- `deepfake_faces_live{stream, verdict}`: faces in view now, by current verdict;
  `deepfake_verdict_changes_total{stream, verdict}`; `deepfake_alerts_total{stream}` (faces turning FAKE).
- `deepfake_capture_to_score_seconds{stream}` (histogram): from a frame's capture to its window score.
- `deepfake_encode_batch_crops` / `deepfake_encode_seconds` (histograms): crops per loop iteration's encoding
  and the time it took (engine calls of at most `pipeline.max_batch`, preprocessing included).
- `deepfake_stage_seconds{stage, quantile}`: the loop's stage timings (p50, p95) as of its last report.
- `deepfake_sink_errors_total{sink, error}`: times a sink other than the store failed (it is skipped for that
  batch; the loop and the other sinks go on).
- `deepfake_webhook_posts_total{outcome}`: webhook deliveries `delivered`, `retried` (a failed attempt tried
  again), `failed` (given up after every retry) and `dropped` (queue full, or still queued at shutdown).

A stream's series stay after it ends (its final state and totals) for `ended_keep_s` (`service.ended_keep_s`), then
are removed, so a long-running service does not keep series for every stream it ever had. The registry is this
object's own, never the process-global one, so several detectors can live in one process. It has no `_created`
series (prometheus_client adds one per counter and histogram child: the time it was made, a second series for every
stream that no one reads); leaving them out here changes no other registry in the process, as
`disable_created_metrics()` would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.metrics_core import Metric

from stream.records import (
    Alert,
    EncodedBatch,
    Event,
    FaceUpdate,
    StageTimings,
    StreamHealth,
    StreamInfo,
    StreamState,
    Verdict,
    VerdictState,
    WindowScore,
)

WEBHOOK_OUTCOMES = ("delivered", "retried", "failed", "dropped")
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
FINAL_STATES = (StreamState.ENDED, StreamState.TRUNCATED, StreamState.INTERRUPTED, StreamState.FAILED, StreamState.LOST)
ENCODE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# The source's cumulative counts in a health report, each mirrored by a counter (name suffix, how to read it).
_HEALTH_COUNTS: dict[str, Callable[[StreamHealth], int]] = {
    "frames_read": lambda h: h.frames_read,
    "frames_dropped": lambda h: h.frames_dropped + h.frames_thinned,  # every frame the buffer dropped
    "frames_thinned": lambda h: h.frames_thinned,
    "crops_encoded": lambda h: h.crops_encoded,
    "crops_skipped": lambda h: h.crops_skipped,
    "reconnects": lambda h: h.reconnects,
}
_HEALTH_HELP = {
    "frames_read": "Frames the source delivered",
    "frames_dropped": "Frames a live source's buffer dropped before the loop took them (thinned ones included)",
    "frames_thinned": "Live frames left out evenly under overload (part of frames_dropped)",
    "crops_encoded": "Face crops encoded",
    "crops_skipped": "Face crops left out under overload",
    "reconnects": "Times a live source reconnected",
}


class WithoutCreated(CollectorRegistry):
    """A registry whose collections leave out the `_created` samples."""

    def collect(self) -> Iterator[Metric]:
        for metric in super().collect():
            metric.samples = [s for s in metric.samples if s.name != f"{metric.name}_created"]
            yield metric


class Metrics:
    """A Sink keeping Prometheus metrics of the loop's events; `exposition()` is what `GET /metrics` serves.

    `info`: the model's labels for `deepfake_model_info` (checkpoint, engine, device, calibrated, ...).
    `send()` runs on the loop thread; scrapes read the registry from the service's threads (prometheus_client's
    metrics are thread-safe), and the bookkeeping dicts below are touched only by `send()`.
    """

    def __init__(self, info: Mapping[str, str] | None = None, ended_keep_s: float = 600.0) -> None:
        self.registry = WithoutCreated()
        self._ended_keep_s = ended_keep_s
        self._ended_at: dict[str, float] = {}  # per ended stream: when (monotonic) its final health came
        registry = self.registry
        self._model = Info("deepfake_model", "The model and engine this detector runs", registry=registry)
        if info:
            self._model.info(dict(info))
        self._counts = {
            name: Counter(f"deepfake_stream_{name}", text, ["stream"], registry=registry)
            for name, text in _HEALTH_HELP.items()
        }
        self._frames_scored = Counter(
            "deepfake_stream_frames_scored", "Frames with at least one window score", ["stream"], registry=registry
        )
        self._windows_scored = Counter(
            "deepfake_stream_windows_scored",
            "Window scores (one per face per scored frame)",
            ["stream"],
            registry=registry,
        )
        self._state = Gauge(
            "deepfake_stream_state",
            "1 for the stream's current state, 0 for the others",
            ["stream", "state"],
            registry=registry,
        )
        self._fps_in = Gauge(
            "deepfake_stream_fps_in", "Frames per second taken by the loop", ["stream"], registry=registry
        )
        self._fps_scored = Gauge(
            "deepfake_stream_fps_scored", "Window scores per second", ["stream"], registry=registry
        )
        self._faces_live = Gauge(
            "deepfake_faces_live", "Faces in view now, by current verdict", ["stream", "verdict"], registry=registry
        )
        self._verdicts = Counter(
            "deepfake_verdict_changes",
            "Faces' verdict changes, by the new verdict",
            ["stream", "verdict"],
            registry=registry,
        )
        self._alerts = Counter("deepfake_alerts", "Faces that turned FAKE", ["stream"], registry=registry)
        self._latency = Histogram(
            "deepfake_capture_to_score_seconds",
            "From a frame's capture to its window score",
            ["stream"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._batch = Histogram(
            "deepfake_encode_batch_crops", "Crops encoded per loop iteration", buckets=BATCH_BUCKETS, registry=registry
        )
        self._encode = Histogram(
            "deepfake_encode_seconds",
            "Time of one loop iteration's encoding (preprocessing included)",
            buckets=ENCODE_BUCKETS,
            registry=registry,
        )
        self._stages = Gauge(
            "deepfake_stage_seconds",
            "The loop's stage timings over recent samples",
            ["stage", "quantile"],
            registry=registry,
        )
        self._webhooks = Counter(
            "deepfake_webhook_posts", "Webhook deliveries by outcome", ["outcome"], registry=registry
        )
        for outcome in WEBHOOK_OUTCOMES:
            self._webhooks.labels(outcome)  # present at 0 from the start, so a rate can be taken at once
        self._last_counts: dict[str, dict[str, int]] = {}  # per stream: the cumulative counts last mirrored
        self._live_verdicts: dict[str, dict[int, VerdictState]] = {}  # per stream: live face -> its verdict
        self._sink_errors = Counter(
            "deepfake_sink_errors", "Times a sink other than the store failed", ["sink", "error"], registry=registry
        )

    def exposition(self) -> tuple[bytes, str]:
        """The metrics as Prometheus text, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def count_sink_error(self, sink: str, error: str) -> None:
        """Count one failure of a non-critical sink (any thread)."""
        self._sink_errors.labels(sink, error).inc()

    def count_webhook(self, outcome: str) -> None:
        """Count one webhook delivery outcome (see WEBHOOK_OUTCOMES); any thread."""
        if outcome not in WEBHOOK_OUTCOMES:
            raise ValueError(f"webhook outcome must be one of {', '.join(WEBHOOK_OUTCOMES)}, got {outcome!r}")
        self._webhooks.labels(outcome).inc()

    # ---- the sink ------------------------------------------------------------------------------------------------
    def send(self, events: Sequence[Event]) -> None:
        scored_frames: set[tuple[str, int]] = set()
        faces_touched: set[str] = set()
        for event in events:
            match event:
                case WindowScore():
                    self._windows_scored.labels(event.stream_id).inc()
                    self._latency.labels(event.stream_id).observe(max(0.0, event.t_scored - event.t_capture))
                    scored_frames.add((event.stream_id, event.frame_index))
                case FaceUpdate():
                    live = self._live_verdicts.setdefault(event.stream_id, {})
                    if event.state == "live":
                        live[event.track_id] = event.verdict
                    else:
                        live.pop(event.track_id, None)
                    faces_touched.add(event.stream_id)
                case Verdict():
                    self._verdicts.labels(event.stream_id, event.state.value).inc()
                case Alert():
                    self._alerts.labels(event.stream_id).inc()
                case StreamHealth():
                    self._health(event)
                case StreamInfo():
                    self._start_stream(event.stream_id)
                    faces_touched.add(event.stream_id)
                case EncodedBatch():
                    self._batch.observe(event.crops)
                    self._encode.observe(event.seconds)
                case StageTimings():
                    for timing in event.timings:
                        self._stages.labels(timing.stage, "0.5").set(timing.p50_ms / 1000)
                        self._stages.labels(timing.stage, "0.95").set(timing.p95_ms / 1000)
                case _:
                    pass  # clips, annotated frames: nothing to count
        for stream_id, _ in scored_frames:
            self._frames_scored.labels(stream_id).inc()
        for stream_id in faces_touched:
            verdicts = list(self._live_verdicts.get(stream_id, {}).values())
            for state in VerdictState:
                self._faces_live.labels(stream_id, state.value).set(verdicts.count(state))
        self._prune_ended()

    def _prune_ended(self) -> None:
        """Remove every series of the streams that ended over `ended_keep_s` ago."""
        cutoff = time.monotonic() - self._ended_keep_s
        for stream_id in [sid for sid, at in self._ended_at.items() if at < cutoff]:
            del self._ended_at[stream_id]
            self._last_counts.pop(stream_id, None)
            self._live_verdicts.pop(stream_id, None)
            for metric in (*self._counts.values(), self._frames_scored, self._windows_scored, self._state):
                metric.remove_by_labels({"stream": stream_id})
            for metric in (self._fps_in, self._fps_scored, self._faces_live, self._verdicts, self._alerts):
                metric.remove_by_labels({"stream": stream_id})
            self._latency.remove_by_labels({"stream": stream_id})

    def _start_stream(self, stream_id: str) -> None:
        """A stream (maybe a name used before) starts: its source counts start again from zero."""
        self._last_counts[stream_id] = dict.fromkeys(_HEALTH_COUNTS, 0)
        self._live_verdicts[stream_id] = {}
        self._ended_at.pop(stream_id, None)
        for name in _HEALTH_COUNTS:
            self._counts[name].labels(stream_id)  # listed at 0 before its first health report
        self._set_state(stream_id, StreamState.STARTING)

    def _health(self, health: StreamHealth) -> None:
        stream_id = health.stream_id
        last = self._last_counts.setdefault(stream_id, dict.fromkeys(_HEALTH_COUNTS, 0))
        for name, read in _HEALTH_COUNTS.items():
            value = read(health)
            if value > last[name]:  # never backwards: a counter only grows
                self._counts[name].labels(stream_id).inc(value - last[name])
                last[name] = value
        self._set_state(stream_id, health.state)
        if health.state in FINAL_STATES:
            self._ended_at.setdefault(stream_id, time.monotonic())
        self._fps_in.labels(stream_id).set(health.fps_in)
        self._fps_scored.labels(stream_id).set(health.fps_scored)

    def _set_state(self, stream_id: str, current: StreamState) -> None:
        for state in StreamState:
            self._state.labels(stream_id, state.value).set(1.0 if state is current else 0.0)

    def close(self) -> None:
        """Nothing to release: the metrics stay readable after the loop has ended."""
