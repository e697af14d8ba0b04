"""Runs the real detector in-process over test-made files: real decoding, MediaPipe, the ONNX engine, SQLite."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.engines import Engine, build_engine
from model.weights import LoadedModel
from stream.capture.references import SourceSpec, parse_source
from stream.capture.sources import Source
from stream.config import Settings, with_overrides
from stream.detector import Detector
from stream.records import FaceSummary
from stream.store import ScoreReader, open_reader

# Short windows keep the test videos short; status lines would only be noise in a test's log; a test that wants
# clips says where.
TEST_DEFAULTS = {"model.window": 10, "pipeline.status_interval_s": 1e9, "clips.enabled": False}


def detector_settings(db: Path, overrides: Mapping[str, Any] | None = None) -> Settings:
    """The defaults with the tests' window, this store, no status lines, and `overrides` (dotted keys)."""
    return with_overrides(Settings(), {**TEST_DEFAULTS, "store.db": str(db), **(overrides or {})}, "test")


@dataclass
class RunResult:
    session_id: str
    summaries: list[FaceSummary]
    sources: list[Source]
    db: Path

    def reader(self) -> ScoreReader:
        return open_reader(self.db)


def run_files(
    files: list[Path],
    loaded: LoadedModel,
    db: Path,
    cache_dir: Path,
    overrides: Mapping[str, Any] | None = None,
) -> RunResult:
    """Replay `files` through one detector into the store at `db`; returns what it reported."""
    specs = [parse_source(str(path)) for path in files]
    return run_specs(specs, loaded, db, cache_dir, overrides)


def run_specs(
    specs: list[SourceSpec],
    loaded: LoadedModel,
    db: Path,
    cache_dir: Path,
    overrides: Mapping[str, Any] | None = None,
    duration_s: float = 120,
    engine: Engine | None = None,
) -> RunResult:
    """Run parsed sources (named s1, s2, …) through one detector into `db` until they end or `duration_s` passes;
    with fp32 ONNX Runtime unless an `engine` is given."""
    settings = detector_settings(db, overrides)
    engine = engine or build_engine(loaded, "cpu", "onnxruntime", cache_dir)
    with Detector(settings, [s.display for s in specs], loaded=loaded, engine=engine) as detector:
        for index, spec in enumerate(specs):
            detector.open_source(spec, name=f"s{index + 1}")
        detector.run(duration_s=duration_s)
        detector.close()
        return RunResult(detector.session_id, detector.face_summaries(), detector.sources, db)
