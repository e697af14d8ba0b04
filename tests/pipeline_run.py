"""Runs the real pipeline in-process over test-made files: real decoding, MediaPipe, the ONNX engine, SQLite."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from model.engine import build_engine
from model.weights import LoadedModel
from stream.pipeline import FaceSummary, Pipeline, PipelineConfig
from stream.sources import Source, SourceOptions, SourceSpec, parse_source
from stream.store import SessionInfo, StoreReader, StoreWriter


@dataclass
class RunResult:
    session_id: str
    summaries: list[FaceSummary]
    sources: list[Source]
    db: Path

    def reader(self) -> StoreReader:
        return StoreReader(self.db)


def session_info(loaded: LoadedModel, config: PipelineConfig, engine_name: str, sources: list[str]) -> SessionInfo:
    return SessionInfo(
        checkpoint=loaded.name,
        calibrated=loaded.calibrated,
        window=config.window,
        stride=config.stride,
        window_mode=config.window_mode,
        threshold=config.policy.threshold,
        hysteresis=config.policy.hysteresis,
        device="cpu",
        engine=engine_name,
        sources=sources,
    )


def run_files(
    files: list[Path],
    loaded: LoadedModel,
    db: Path,
    cache_dir: Path,
    config: PipelineConfig | None = None,
    realtime: bool = False,
) -> RunResult:
    """Replay `files` through one pipeline into the store at `db`; returns what it reported."""
    specs = [parse_source(str(path)) for path in files]
    return run_specs(specs, loaded, db, cache_dir, config, realtime)


def run_specs(
    specs: list[SourceSpec],
    loaded: LoadedModel,
    db: Path,
    cache_dir: Path,
    config: PipelineConfig | None = None,
    realtime: bool = False,
    duration_s: float = 120,
    options: SourceOptions | None = None,
) -> RunResult:
    """Run parsed sources through one pipeline into the store at `db` until they end or `duration_s` passes."""
    config = config or PipelineConfig(window=10)
    engine = build_engine(loaded, "cpu", "onnxruntime", cache_dir)
    with StoreWriter(db) as store:
        session_id = store.start_session(session_info(loaded, config, engine.name, [s.display for s in specs]))
        pipeline = Pipeline(engine, loaded, store, session_id, config)
        sources = []
        for index, spec in enumerate(specs):
            source = Source(f"s{index + 1}", spec, options or SourceOptions(), realtime=realtime)
            source.open()
            pipeline.add_source(source)
            sources.append(source)
        pipeline.run(duration_s=duration_s)
        store.end_session(session_id)
        return RunResult(session_id, pipeline.face_summaries(), sources, db)
