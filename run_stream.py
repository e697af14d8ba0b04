"""deepfake-stream command line: parse arguments and configuration, build the pipeline, run it, summarise.

`python run_stream.py SOURCE [SOURCE ...]` where SOURCE is `demo`, a webcam (`0`, `/dev/video0`), `rtsp://…`
or a video file. Every default lives in configs/default.yaml; flags override it.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from dashboard.launch import DashboardError, start_dashboard
from model.engine import EngineError, build_engine
from model.summary import summarise
from model.weights import UNCALIBRATED_WARNING, CheckpointError, LoadedModel, resolve_weights
from stream.clips import ClipSettings
from stream.demo import astronaut_face_crops, demo_frames
from stream.face_model import FaceModelError
from stream.faces import BoxMapping, FaceDetector
from stream.pipeline import MAX_WINDOW, MIN_WINDOW, FaceSummary, Pipeline, PipelineConfig
from stream.scores import VerdictPolicy
from stream.sources import Source, SourceError, SourceOptions, SourceSpec, parse_source
from stream.store import SessionInfo, StoreError, StoreWriter

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"
log = logging.getLogger("deepfake_stream")


class ConfigError(Exception):
    """A configuration file or a flag value that cannot be used."""


def load_config(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"config {path} must be a mapping of sections")
    return content


def window_length(text: str) -> int:
    value = int(text)
    if not MIN_WINDOW <= value <= MAX_WINDOW:
        raise argparse.ArgumentTypeError(f"must be {MIN_WINDOW}..{MAX_WINDOW} frames, got {value}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes get one line on stderr, not argparse's usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = OneLineParser(prog="run_stream.py", description="Real-time deepfake detection for live video.")
    parser.add_argument("sources", nargs="*", metavar="SOURCE", help="demo | 0 | /dev/video0 | rtsp://… | FILE")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="YAML with every default")
    parser.add_argument("--weights", help="auto | PATH to a checkpoint")
    parser.add_argument("--window", type=window_length, help=f"frames per window, {MIN_WINDOW}..{MAX_WINDOW}")
    parser.add_argument("--stride", type=positive_int, help="score each face every N scored crops")
    parser.add_argument("--window-mode", choices=["mean", "last"])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--cpu-engine", choices=["auto", "onnxruntime", "torch"])
    parser.add_argument("--db", type=Path, help="the score store (SQLite)")
    parser.add_argument("--realtime", action=argparse.BooleanOptionalAction, help="pace files like a live stream")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--report", type=Path, help="write the per-face summary to this JSON file")
    parser.add_argument("--dashboard", action="store_true", help="also serve the dashboard on 127.0.0.1")
    parser.add_argument("--model-info", action="store_true", help="print what the model layer resolved and exit")
    args = parser.parse_args(argv)
    if not args.sources and not args.model_info:
        parser.error("give at least one SOURCE (try: demo)")
    return args


def _setting(args_value: Any, config: dict[str, Any], section: str, key: str, default: Any) -> Any:
    if args_value is not None:
        return args_value
    return config.get(section, {}).get(key, default)


def pipeline_config(args: argparse.Namespace, config: dict[str, Any]) -> PipelineConfig:
    verdicts, pipeline, tracking, faces = (config.get(k, {}) for k in ("verdicts", "pipeline", "tracking", "faces"))
    try:
        return PipelineConfig(
            window=int(_setting(args.window, config, "model", "window", 20)),
            stride=int(_setting(args.stride, config, "model", "stride", 1)),
            window_mode=str(_setting(args.window_mode, config, "model", "window_mode", "mean")),
            max_batch=int(pipeline.get("max_batch", 16)),
            max_wait_ms=float(pipeline.get("max_wait_ms", 0)),
            min_face_score=float(faces.get("min_score", 0.5)),
            iou_threshold=float(tracking.get("iou_threshold", 0.3)),
            max_missed_frames=int(tracking.get("max_missed_frames", 15)),
            annotate_fps=float(pipeline.get("annotate_fps", 4)),
            status_interval_s=float(pipeline.get("status_interval_s", 5)),
            policy=VerdictPolicy(
                threshold=float(verdicts.get("threshold", 0.5)),
                hysteresis=float(verdicts.get("hysteresis", 0.1)),
                rolling=int(verdicts.get("rolling", 5)),
            ),
            clips=clip_settings(config),
        )
    except (TypeError, ValueError) as error:
        raise ConfigError(f"bad setting: {error}") from None


def clip_settings(config: dict[str, Any]) -> ClipSettings | None:
    clips = config.get("clips", {})
    if not clips.get("enabled", True):
        return None
    return ClipSettings(
        directory=Path(clips.get("directory", "runs/clips")),
        post_roll_s=float(clips.get("post_roll_s", 3)),
        size=int(clips.get("size", 112)),
        max_total_mb=float(clips.get("max_total_mb", 500)),
    )


def box_mapping(config: dict[str, Any]) -> BoxMapping:
    faces = config.get("faces", {})
    try:
        return BoxMapping(
            dx=float(faces.get("box_dx", 0.066)),
            dy=float(faces.get("box_dy", 0.077)),
            scale_w=float(faces.get("box_scale_w", 0.886)),
            scale_h=float(faces.get("box_scale_h", 0.887)),
        )
    except (TypeError, ValueError) as error:
        raise ConfigError(f"bad face box setting: {error}") from None


def source_options(config: dict[str, Any]) -> SourceOptions:
    settings = config.get("sources", {})
    known = {k: float(v) if "_s" in k else int(v) for k, v in settings.items() if k in SourceOptions.__annotations__}
    return SourceOptions(**known)


def stream_ids(specs: Sequence[SourceSpec]) -> list[str]:
    """Short, unique, credential-free names: `demo`, `video0`, the file's stem, the camera's host and path."""
    names: list[str] = []
    for spec in specs:
        if spec.kind == "file":
            base = Path(spec.target).stem
        elif spec.kind == "rtsp":
            base = spec.display.split("://", 1)[1].split("@")[-1].replace("/", "_").strip("_")
        else:
            base = Path(spec.target).name
        name, n = base or spec.kind, 2
        while name in names:
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names


def make_source(stream_id: str, spec: SourceSpec, options: SourceOptions, realtime: bool) -> Source:
    producer = demo_frames if spec.kind == "demo" else None
    return Source(stream_id, spec, options, realtime=realtime, producer=producer)


def print_summary(summaries: Sequence[FaceSummary], stream_names: Sequence[str], calibrated: bool) -> None:
    def media(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}s"

    def prob(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    print("\nper-face summary" + ("" if calibrated else f" ({UNCALIBRATED_WARNING})"))
    print(f"{'stream':<16} {'face':>4} {'first':>8} {'last':>8} {'scored':>6} {'verdict':<7} {'mean':>6} {'max':>6}")
    for s in summaries:
        print(
            f"{s.stream_id:<16} {s.track_id:>4} {media(s.first_t_media):>8} {media(s.last_t_media):>8} "
            f"{s.frames_scored:>6} {s.verdict:<7} {prob(s.mean_p_fake):>6} {prob(s.max_p_fake):>6}"
        )
    for name in stream_names:
        if not any(s.stream_id == name for s in summaries):
            print(f"{name:<16} no faces found")


def write_report(path: Path, session_id: str, loaded: LoadedModel, summaries: Sequence[FaceSummary]) -> None:
    report = {
        "session_id": session_id,
        "checkpoint": loaded.name,
        "calibrated": loaded.calibrated,
        "faces": [asdict(s) for s in summaries],
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
    except OSError as error:
        raise ConfigError(f"cannot write report {path}: {error.strerror}") from None


def run(args: argparse.Namespace, config: dict[str, Any]) -> int:
    settings = PipelineSettings(args, config)
    specs: list[SourceSpec] = []
    failed = 0
    for reference in args.sources:
        try:
            specs.append(parse_source(reference))
        except SourceError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
    if not specs:
        return 1
    loaded = resolve_weights(settings.weights)
    engine = build_engine(loaded, settings.device, settings.cpu_engine)
    if not loaded.calibrated:
        log.warning("%s: every verdict will be UNSURE", UNCALIBRATED_WARNING)
    log.info("model: %s on %s (%s)", loaded.describe(), engine.device, engine.name)
    mapping = box_mapping(config)
    with StoreWriter(settings.db, retention_days=settings.retention_days) as store:
        session_id = store.start_session(
            SessionInfo(
                checkpoint=loaded.name,
                calibrated=loaded.calibrated,
                window=settings.pipeline.window,
                stride=settings.pipeline.stride,
                window_mode=settings.pipeline.window_mode,
                threshold=settings.pipeline.policy.threshold,
                hysteresis=settings.pipeline.policy.hysteresis,
                device=str(engine.device),
                engine=engine.name,
                sources=[s.display for s in specs],
            )
        )
        pipeline = Pipeline(
            engine,
            loaded,
            store,
            session_id,
            settings.pipeline,
            detector_factory=lambda: FaceDetector(min_score=settings.pipeline.min_face_score, mapping=mapping),
        )
        names = stream_ids(specs)
        sources = []
        for name, spec in zip(names, specs, strict=True):
            source = make_source(name, spec, settings.source_options, settings.realtime)
            try:
                source.open()
            except SourceError as error:
                print(f"error: {error}", file=sys.stderr)
                failed += 1
                continue
            pipeline.add_source(source)
            sources.append(source)
            log.info("%s: %s (%s)", name, spec.display, "live" if source.live else "file, as fast as possible")
        if not sources:
            store.end_session(session_id)
            return 1
        interrupted = threading.Event()

        def on_signal(*_: object) -> None:
            interrupted.set()
            pipeline.stop()

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, on_signal)
        store.commit()
        dashboard = start_dashboard(settings.db) if args.dashboard else None
        try:
            if dashboard:
                print(f"dashboard: {dashboard.url}", flush=True)
            log.info("session %s writing to %s; Ctrl-C stops", session_id, settings.db)
            pipeline.run(args.duration)
            store.end_session(session_id)
            if dashboard and not interrupted.is_set() and args.duration is None:
                log.info("the detector is done; the dashboard stays at %s until Ctrl-C", dashboard.url)
                interrupted.wait()
        finally:
            if dashboard:
                dashboard.stop()
        for source in sources:
            if source.last_error:
                print(f"warning: {source.last_error}", file=sys.stderr)
        summaries = pipeline.face_summaries()
    print_summary(summaries, [s.stream_id for s in sources], loaded.calibrated)
    if args.report:
        write_report(args.report, session_id, loaded, summaries)
    return 1 if failed else 0


class PipelineSettings:
    """Flags over the config file, resolved once."""

    def __init__(self, args: argparse.Namespace, config: dict[str, Any]) -> None:
        self.weights = _setting(args.weights, config, "model", "weights", "auto")
        self.device = _setting(args.device, config, "model", "device", "auto")
        self.cpu_engine = _setting(args.cpu_engine, config, "model", "cpu_engine", "auto")
        self.db = Path(_setting(args.db, config, "store", "db", "runs/deepfake.db"))
        self.retention_days = config.get("store", {}).get("retention_days", 30)
        self.realtime = bool(_setting(args.realtime, config, "sources", "realtime", False))
        self.pipeline = pipeline_config(args, config)
        self.source_options = source_options(config)


def model_info(args: argparse.Namespace, config: dict[str, Any]) -> int:
    settings = config.get("model", {})
    loaded = resolve_weights(args.weights or settings.get("weights", "auto"))
    device = args.device or settings.get("device", "auto")
    engine = build_engine(loaded, device, args.cpu_engine or settings.get("cpu_engine", "auto"))
    for line in summarise(loaded, engine, astronaut_face_crops()).lines():
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    try:
        config = load_config(args.config)
        return model_info(args, config) if args.model_info else run(args, config)
    except (ConfigError, CheckpointError, EngineError, StoreError, FaceModelError, DashboardError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
