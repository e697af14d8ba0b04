"""One assembly: a `Detector` is built from settings — model, engine, score store and session, sinks, the loop — and
owns them. The CLI, the benchmarks, the tests (and later the service and a Ray actor) all build it this way."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from model.engine import Calibration, Engine, build_engine
from model.weights import LoadedModel, resolve_weights
from stream.config import Settings, settings_as_dict
from stream.cropping import crop_geometry
from stream.faces import FaceDetector
from stream.health import StreamHealth
from stream.pipeline import Pipeline
from stream.sinks import LogSink, Sink, StoreSink
from stream.sources import Producer, Source, SourceSpec, parse_source, stream_name
from stream.store import FaceSummary, ScoreWriter, SessionInfo, open_writer

log = logging.getLogger("deepfake_stream")


def cpu_calibration(settings: Settings) -> Calibration | None:
    """Crops for the int8 engine (cut from the demo by this run's own cropper) when the settings ask for it."""
    if settings.model.cpu_engine != "onnxruntime-int8":
        return None
    from stream.calibration import demo_calibration

    return demo_calibration(settings)


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
        settings = replace(settings, clips=settings.clips.beside_store(settings.store.db))
        self.settings = settings
        self.loaded = loaded or resolve_weights(settings.model.weights)
        self.engine = engine or build_engine(
            self.loaded, settings.model.device, settings.model.cpu_engine, cache_dir, cpu_calibration(settings)
        )
        self.writer: ScoreWriter = open_writer(settings.store.db, settings.store.retention_days)
        try:
            config = {**settings_as_dict(settings), "crop_geometry": crop_geometry(settings.faces)}
            if getattr(self.engine, "gate_result", ""):
                config["engine_gate"] = self.engine.gate_result  # type: ignore[attr-defined]
            self.session_id = self.writer.start_session(self._session_info(sources), config)
        except BaseException:
            self.writer.close()
            raise
        self.pipeline = Pipeline(
            self.engine,
            self.loaded,
            self.session_id,
            settings,
            [StoreSink(self.writer, self.session_id), LogSink(), *sinks],
            detector_factory,
        )
        self._names: list[str] = []
        self.sources: list[Source] = []
        self._closed = False

    def _session_info(self, sources: Sequence[str]) -> SessionInfo:
        model, verdicts = self.settings.model, self.settings.verdicts
        return SessionInfo(
            checkpoint=self.loaded.name,
            calibrated=self.loaded.calibrated,
            window=model.window,
            stride=model.stride,
            window_mode=model.window_mode,
            threshold=verdicts.threshold,
            hysteresis=verdicts.hysteresis,
            device=str(self.engine.device),
            engine=self.engine.name,
            sources=list(sources),
        )

    def open_source(
        self, reference: str | SourceSpec, name: str | None = None, producer: Producer | None = None
    ) -> Source:
        """Open a source (SourceError at once when it cannot be used) and hand it to the loop."""
        spec = parse_source(reference) if isinstance(reference, str) else reference
        stream_id = name or stream_name(spec, self._names)
        source = Source(stream_id, spec, self.settings.sources, producer=producer)
        source.open()
        self._names.append(stream_id)
        self.sources.append(source)
        self.pipeline.add_source(source)
        return source

    def run(self, duration_s: float | None = None, serve: bool = False) -> None:
        """Run the loop on this thread (see `Pipeline.run`)."""
        self.pipeline.run(duration_s, serve)

    def stop(self, interrupted: bool = False) -> None:
        self.pipeline.stop(interrupted)

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
