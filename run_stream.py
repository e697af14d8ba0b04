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

from dashboard.launch import DashboardError, start_dashboard
from model.engine import EngineError, build_engine
from model.summary import summarise
from model.weights import UNCALIBRATED_WARNING, CheckpointError, LoadedModel, resolve_weights
from stream.config import DEFAULT_CONFIG, MAX_WINDOW, MIN_WINDOW, ConfigError, Settings, load_settings
from stream.demo import astronaut_face_crops, demo_frames
from stream.detector import Detector
from stream.face_model import FaceModelError
from stream.sources import SourceError, SourceSpec, parse_source
from stream.store import FaceSummary, StoreError

log = logging.getLogger("deepfake_stream")


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


# Each flag overrides the config key of the same meaning.
FLAG_KEYS = {
    "weights": "model.weights",
    "window": "model.window",
    "stride": "model.stride",
    "window_mode": "model.window_mode",
    "device": "model.device",
    "cpu_engine": "model.cpu_engine",
    "db": "store.db",
    "realtime": "sources.realtime",
}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = OneLineParser(prog="run_stream.py", description="Real-time deepfake detection for live video.")
    parser.add_argument("sources", nargs="*", metavar="SOURCE", help="demo | 0 | /dev/video0 | rtsp://… | FILE")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="YAML with every default")
    parser.add_argument("--weights", help="auto | PATH to a checkpoint")
    parser.add_argument("--window", type=window_length, help=f"frames per window, {MIN_WINDOW}..{MAX_WINDOW}")
    parser.add_argument("--stride", type=positive_int, help="score each face every N scored crops")
    parser.add_argument("--window-mode", choices=["mean", "last"])
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
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


def resolve_settings(args: argparse.Namespace) -> Settings:
    """The config file, then the flags over the same keys."""
    return load_settings(args.config, {key: getattr(args, flag) for flag, key in FLAG_KEYS.items()})


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


def parse_sources(references: Sequence[str]) -> tuple[list[SourceSpec], int]:
    """The references that parse, and how many did not (each said on stderr)."""
    specs, failed = [], 0
    for reference in references:
        try:
            specs.append(parse_source(reference))
        except SourceError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
    return specs, failed


def run(args: argparse.Namespace, settings: Settings) -> int:
    specs, failed = parse_sources(args.sources)
    if not specs:
        return 1
    detector = Detector(settings, sources=[s.display for s in specs])
    dashboard = None
    try:
        loaded = detector.loaded
        if not loaded.calibrated:
            log.warning("%s: every verdict will be UNSURE", UNCALIBRATED_WARNING)
        log.info("model: %s on %s (%s)", loaded.describe(), detector.engine.device, detector.engine.name)
        for spec in specs:
            try:
                source = detector.open_source(spec, producer=demo_frames if spec.kind == "demo" else None)
            except SourceError as error:
                print(f"error: {error}", file=sys.stderr)
                failed += 1
                continue
            log.info(
                "%s: %s (%s)", source.stream_id, spec.display, "live" if source.live else "file, as fast as possible"
            )
        if not detector.sources:
            return 1
        interrupted = threading.Event()

        def on_signal(*_: object) -> None:
            interrupted.set()
            detector.stop()

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, on_signal)
        dashboard = start_dashboard(settings.store.db) if args.dashboard else None
        if dashboard:
            print(f"dashboard: {dashboard.url}", flush=True)
        log.info("session %s writing to %s; Ctrl-C stops", detector.session_id, settings.store.db)
        detector.run(args.duration)
        detector.close()
        if dashboard and not interrupted.is_set() and args.duration is None:
            log.info("the detector is done; the dashboard stays at %s until Ctrl-C", dashboard.url)
            interrupted.wait()
    finally:
        detector.close()
        if dashboard:
            dashboard.stop()
    for source in detector.sources:
        if source.last_error:
            print(f"warning: {source.last_error}", file=sys.stderr)
    summaries = detector.face_summaries()
    print_summary(summaries, [s.stream_id for s in detector.sources], loaded.calibrated)
    if args.report:
        write_report(args.report, detector.session_id, loaded, summaries)
    return 1 if failed else 0


def model_info(settings: Settings) -> int:
    loaded = resolve_weights(settings.model.weights)
    engine = build_engine(loaded, settings.model.device, settings.model.cpu_engine)
    for line in summarise(loaded, engine, astronaut_face_crops()).lines():
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    try:
        settings = resolve_settings(args)
        return model_info(settings) if args.model_info else run(args, settings)
    except (ConfigError, CheckpointError, EngineError, StoreError, FaceModelError, DashboardError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
