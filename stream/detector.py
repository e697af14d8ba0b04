"""One assembly: a `Detector` is built from settings — model, engine, score store and session, sinks, the loop — and
owns them. The CLI, the benchmarks, the tests (and later the service and a Ray actor) all build it this way."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from model.engines import GATED_CPU_ENGINES, Calibration, Engine, build_engine
from model.weights import LoadedModel, resolve_weights
from stream.capture.references import SourceSpec, parse_source, stream_name
from stream.capture.sources import Producer, Source
from stream.config import Settings, settings_as_dict
from stream.config.store_location import local_path
from stream.faces.cropper import crop_geometry
from stream.faces.mediapipe_detectors import FaceDetector
from stream.loop.pipeline import Pipeline
from stream.loop.verdicts import window_warning, with_checkpoint
from stream.records import FaceSummary, StopReason, StreamHealth
from stream.sinks.log_sink import LogSink
from stream.sinks.protocol import Sink
from stream.sinks.store_sink import StoreSink
from stream.sinks.webhooks import WebhookSink
from stream.store import ScoreWriter, SessionInfo, open_writer

if TYPE_CHECKING:
    from stream.sinks.metrics import Metrics

log = logging.getLogger("deepfake_stream")


def cpu_calibration(settings: Settings) -> Calibration | None:
    """Crops for the parity gate (and the int8 calibration), cut from the demo by this run's own cropper, when the
    settings ask for a gated CPU engine or for `auto`."""
    if settings.model.cpu_engine not in ("auto", *GATED_CPU_ENGINES):
        return None
    from stream.loop.calibration_crops import demo_calibration

    return demo_calibration(settings)


def engine_label(engine: Engine) -> str:
    """The engine's name, and for `auto` what it measured: `openvino-int8 (auto, 295 crops/s)` (the session row,
    so the dashboard's header shows it)."""
    rate = engine.choice.crops_per_s if engine.choice else None
    return f"{engine.name} (auto, {rate:.0f} crops/s)" if rate else engine.name


class Detector:
    """The model, the store session and the loop of one run. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        settings: Settings,
        sources: Sequence[str] = (),
        loaded: LoadedModel | None = None,
        engine: Engine | None = None,
        cache_dir: Path | None = None,
        sinks: Sequence[Sink] = (),
        detector_factory: Callable[[], FaceDetector] | None = None,
    ) -> None:
        """`sources`: the (redacted) references the run starts with, recorded in the session; more may be
        added while it runs. `loaded`/`engine` default to what `settings.model` resolves to."""
        # Clips go where this run's store is (or where the user said, from the directory the run started in),
        # fixed now as an absolute path: the alert links it for a dashboard started from anywhere, and the config
        # kept with the session says where they went.
        settings = replace(settings, clips=settings.clips.beside_store(local_path(settings.store.db)))
        self.settings = settings
        self.loaded = loaded or resolve_weights(settings.model.weights)
        # The threshold in force: the config's (or --threshold), else the checkpoint's calibrated one, else 0.5.
        self.policy = with_checkpoint(settings.verdicts, self.loaded.threshold)
        self.window_warning = window_warning(self.loaded, settings.model.window)
        if self.window_warning:
            log.warning("%s", self.window_warning)
        self.engine = engine or build_engine(
            self.loaded, settings.model.device, settings.model.cpu_engine, cache_dir, cpu_calibration(settings)
        )
        self.writer: ScoreWriter = open_writer(settings.store.db, settings.store.retention_days)
        try:
            config = {**settings_as_dict(settings), "crop_geometry": crop_geometry(settings.faces)}
            choice = self.engine.choice
            if choice and choice.gate:
                config["engine_gate"] = choice.gate
            if choice and choice.line:
                config["engine_choice"] = choice.line
            if self.window_warning:
                config["window_warning"] = self.window_warning  # the report's settings say so
            self.session_id = self.writer.start_session(self._session_info(sources), config)
        except BaseException:
            self.writer.close()
            raise
        self.metrics: Metrics | None = None  # with the service, which serves it at /metrics
        self.pipeline = Pipeline(
            self.engine,
            self.loaded,
            self.session_id,
            settings,
            [StoreSink(self.writer, self.session_id), LogSink(), *self._service_sinks(), *sinks],
            detector_factory,
            on_sink_error=self.metrics.count_sink_error if self.metrics is not None else None,
        )
        self._names: list[str] = []
        self.sources: list[Source] = []
        self._closed = False

    def _service_sinks(self) -> list[Sink]:
        """Metrics when the service runs (it serves them at /metrics); webhooks whenever URLs are configured."""
        service = self.settings.service
        sinks: list[Sink] = []
        if service.port is not None:
            # Imported here: prometheus_client is the service's; a detector without one never loads it.
            from stream.sinks.metrics import Metrics

            model = {"session_id": self.session_id, "checkpoint": self.loaded.name, "engine": self.engine.name}
            model |= {"device": str(self.engine.device), "calibrated": str(self.loaded.calibrated).lower()}
            self.metrics = Metrics({**model, "window": str(self.settings.model.window)}, service.ended_keep_s)
            sinks.append(self.metrics)
        if service.webhooks:
            sinks.append(WebhookSink(service, self.session_id, self.metrics))
        return sinks

    def _session_info(self, sources: Sequence[str]) -> SessionInfo:
        model, verdicts = self.settings.model, self.policy
        return SessionInfo(
            checkpoint=self.loaded.name,
            calibrated=self.loaded.calibrated,
            window=model.window,
            stride=model.stride,
            window_mode=model.window_mode,
            threshold=verdicts.threshold,
            hysteresis=verdicts.hysteresis,
            device=str(self.engine.device),
            engine=engine_label(self.engine),
            sources=list(sources),
        )

    def open_source(
        self, reference: str | SourceSpec, name: str | None = None, producer: Producer | None = None
    ) -> Source:
        """Open a source (SourceError at once when it cannot be used) and hand it to the loop."""
        return self.add_source(reference, name, producer)[0]

    def add_source(
        self, reference: str | SourceSpec, name: str | None = None, producer: Producer | None = None
    ) -> tuple[Source, Future[None]]:
        """`open_source`, with the loop's answer: the future is done once the loop runs the stream, and fails with
        ValueError when a running stream has its id (the source is then stopped) or RuntimeError once the loop
        has stopped. Blocking (it connects): call it off any event loop."""
        source = self.prepare_source(reference, name, producer)
        return source, self.start_source(source)

    def prepare_source(
        self, reference: str | SourceSpec, name: str | None = None, producer: Producer | None = None
    ) -> Source:
        """The source a reference names, its stream id chosen, not yet opened: SourceError at once when the reference
        cannot be used. Does not connect (the service answers with it while `start_source` opens it elsewhere)."""
        spec = parse_source(reference) if isinstance(reference, str) else reference
        if producer is None and spec.kind == "demo":
            from stream.capture.demo import demo_frames

            producer = demo_frames
        stream_id = name or stream_name(spec, self._names)
        self._names.append(stream_id)
        return Source(stream_id, spec, self.settings.sources, producer=producer)

    def start_source(self, source: Source) -> Future[None]:
        """Open a prepared source (SourceError when it cannot be used) and hand it to the loop; the loop's answer as
        in `add_source`. Blocking (it connects): call it off any event loop."""
        source.open()
        self.sources.append(source)
        added = self.pipeline.add_source(source)
        added.add_done_callback(lambda done: self._forget_if_refused(source, done))
        return added

    def _forget_if_refused(self, source: Source, added: Future[None]) -> None:
        """A source the loop did not take (its id was running, the loop had stopped, or the caller gave up) is
        stopped and forgotten."""
        if added.cancelled() or added.exception() is not None:
            source.stop()
            with contextlib.suppress(ValueError):
                self.sources.remove(source)

    def run(self, duration_s: float | None = None, serve: bool = False) -> None:
        """Run the loop on this thread (see `Pipeline.run`)."""
        self.pipeline.run(duration_s, serve)

    def stop(self, reason: StopReason = StopReason.RUN_ENDED) -> None:
        """End the loop (see `Pipeline.stop`): files and uploads not yet at their end are interrupted, by `reason`."""
        self.pipeline.stop(reason)

    def health(self) -> list[StreamHealth]:
        return self.pipeline.health()

    def face_summaries(self) -> list[FaceSummary]:
        return self.pipeline.face_summaries()

    def close(self) -> None:
        """Stop the loop's sources, end the session and close the store. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self.pipeline.close()
            self.writer.end_session(self.session_id)
        finally:
            self.writer.close()

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
