"""deepfake-stream command line: parse arguments and configuration, build the detector, run it, report.

`python run_stream.py SOURCE [SOURCE ...]` where SOURCE is `demo`, a webcam (`0`, `/dev/video0`), `rtsp://…`,
`screen[:X,Y,W,H]` or a video file. Every default lives in configs/default.yaml; flags override it.
`python run_stream.py --dashboard-only --db STORE` serves the dashboard alone, on 127.0.0.1.
`--serve [HOST:]PORT` also runs the HTTP service (control API, uploads, WHIP); with no SOURCE it serves until stopped.

Only the standard library is imported before the arguments are parsed, so `--help` and usage mistakes answer at
once; the model, MediaPipe and the store come in after, inside `main()`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import threading
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.cli import OneLineParser
from model.labels import UNCALIBRATED_WARNING
from stream.config.flags import SERVICE_FLAGS, SHARED_FLAGS, add_flags, add_verbose, flag_overrides
from stream.config.logs import configure_logging
from stream.config.tokens import add_token_flags, token_keys

if TYPE_CHECKING:
    from stream.capture.references import SourceSpec
    from stream.config import Settings
    from stream.detector import Detector
    from stream.preflight import Checked
    from stream.store import Report

log = logging.getLogger("deepfake_stream")
EXIT_INTERRUPTED = 130  # the shell's convention for a run ended by Ctrl-C (128 + SIGINT)


class UsageError(Exception):
    """A flag value that cannot be used; one line for the user."""


def positive_seconds(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def webhook_url(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"must be an http:// or https:// URL with a host, got {text!r}")
    return text


def serve_address(text: str) -> tuple[str | None, int]:
    """`PORT` or `HOST:PORT` (`[::1]:PORT` for IPv6); port 0 picks a free one."""
    host, _, port = text.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"must be [HOST:]PORT with a port 0..65535 (0: a free one), got {text!r}")
    return host.strip("[]") or None, int(port)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = OneLineParser(prog="run_stream.py", description="Real-time deepfake detection for live video.")
    parser.add_argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="demo | 0 | /dev/video0 | rtsp://… | screen | screen:X,Y,W,H | FILE (a video)",
    )
    parser.add_argument("--config", type=Path, help="YAML over configs/default.yaml (strict: unknown keys are errors)")
    add_flags(parser, SHARED_FLAGS)  # each overrides the config key of the same meaning
    parser.add_argument("--duration", type=positive_seconds, help="stop after this many seconds")
    parser.add_argument(
        "--report", type=Path, help="write the run's report (JSON, schema in docs/cli-and-config.md) to this file"
    )
    parser.add_argument("--dashboard", action="store_true", help="also serve the dashboard (on --dashboard-address)")
    parser.add_argument(
        "--dashboard-only", action="store_true", help="serve only the dashboard over --db, until Ctrl-C"
    )
    parser.add_argument(
        "--dashboard-address",
        default="127.0.0.1",
        metavar="HOST",
        help="where the dashboard listens (default 127.0.0.1; any other address needs "
        "$DEEPFAKE_STREAM_DASHBOARD_PASSWORD)",
    )
    parser.add_argument("--model-info", action="store_true", help="print what the model layer resolved and exit")
    parser.add_argument(
        "--serve",
        type=serve_address,
        metavar="[HOST:]PORT",
        help="run the HTTP service (control API, uploads, WHIP) on HOST (default 127.0.0.1):PORT (0: a free port)",
    )
    add_token_flags(parser)
    add_flags(parser, SERVICE_FLAGS)
    parser.add_argument(
        "--webhook",
        action="append",
        type=webhook_url,
        metavar="URL",
        help="POST a JSON event here for each FAKE alert and stream lost/recovered (repeatable; adds to the config's)",
    )
    add_verbose(parser)
    args = parser.parse_args(argv)
    if args.dashboard_only and args.sources:
        parser.error("--dashboard-only serves a store: give no SOURCE")
    if not args.sources and not (args.model_info or args.dashboard_only or args.serve):
        parser.error("give at least one SOURCE (try: demo), or --serve PORT")
    if args.serve and (args.dashboard_only or args.model_info):
        parser.error("--serve runs the detector: not with --dashboard-only or --model-info")
    if args.dashboard or args.dashboard_only:
        from dashboard.access import address_problem  # the standard library only

        problem = address_problem(args.dashboard_address, os.environ)
        if problem:
            raise_usage(problem)
    return args


def raise_usage(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def resolve_settings(args: argparse.Namespace) -> Settings:
    """The config file, then the flags over the same keys."""
    from stream.config import DEFAULT_CONFIG, environment_overrides, load_settings, with_overrides

    flags = (
        environment_overrides(os.environ)
        | flag_overrides(args, SHARED_FLAGS)
        | flag_overrides(args, SERVICE_FLAGS)
        | serve_keys(args)
    )
    settings = load_settings(args.config or DEFAULT_CONFIG, flags)
    if args.webhook:  # added to the config's webhooks, not instead of them
        settings = with_overrides(settings, {"service.webhooks": [*settings.service.webhooks, *args.webhook]})
    return settings


def serve_keys(args: argparse.Namespace) -> dict[str, object]:
    """`--serve` and the tokens (stream/config/tokens.py: a file, the environment, or a flag with a warning) as the
    service's config keys."""
    tokens, warnings = token_keys(args, os.environ)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    keys: dict[str, object] = dict(tokens)
    if args.serve is not None:
        keys["service.host"], keys["service.port"] = args.serve
    return keys


def print_report(report: Report) -> None:
    def media(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}s"

    def prob(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    width = max([6, *(len(s.stream_id) for s in report.streams)])
    print("\nper-face summary" + ("" if report.calibrated else f" ({UNCALIBRATED_WARNING})"))
    # `windows`: the face's window scores (each scores the last `--window` frames of that face).
    columns = f"{'face':>4} {'first':>8} {'last':>8} {'windows':>7} {'verdict':<7} {'mean':>6} {'max':>6}"
    print(f"{'stream':<{width}} {columns}")
    for stream in report.streams:
        for f in stream.faces:
            head = f"{stream.stream_id:<{width}} {f.track_id:>4} {media(f.first_t_media):>8} {media(f.last_t_media):>8}"
            if f.status == "not_scored":
                print(f"{head} {f.note}")
            else:
                print(f"{head} {f.frames_scored:>7} {f.verdict:<7} {prob(f.mean_p_fake):>6} {prob(f.max_p_fake):>6}")
        if not stream.faces:
            print(f"{stream.stream_id:<{width}} no faces found")
    print()
    for stream in report.streams:
        print(
            f"{stream.stream_id}: {stream.verdict} ({stream.verdict_rule}); {stream.status_text()}, "
            f"{stream.frames_read} frames read, {stream.frames_scored} with a window score"
        )


def write_report(path: Path, report: Report) -> bool:
    """Write the report (its folder was checked before the run, and is not made now); False, said in one line, when
    it still cannot be written. A new file is made 0600 (and one there before tightened to it): it names cameras."""
    from stream.store.private_files import open_private

    try:
        with open_private(path, exclusive=False) as out:
            out.write(json.dumps(report.as_dict(), indent=2).encode())
    except OSError as error:
        print(f"error: cannot write report {path}: {error.strerror or error}", file=sys.stderr)
        return False
    return True


def open_sources(detector: Detector, specs: Sequence[SourceSpec]) -> int:
    """Hand every source to the detector; how many could not be opened (each said on stderr)."""
    from stream.capture.demo import demo_frames
    from stream.capture.references import SourceError

    failed = 0
    for spec in specs:
        try:
            source = detector.open_source(spec, producer=demo_frames if spec.kind == "demo" else None)
        except SourceError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        mode = "live" if spec.live else ("file, paced" if source.live else "file, as fast as possible")
        log.info("%s: %s (%s)", source.stream_id, spec.display, mode)
    return failed


def run(args: argparse.Namespace, settings: Settings, checked: Checked) -> int:
    """The run, after `stream.preflight` has checked what it can without the model."""
    from dashboard.launch import start_dashboard
    from stream.detector import Detector
    from stream.records import StopReason
    from stream.service.app import Service, default_extensions
    from stream.store import build_report, open_reader

    serving = checked.listener is not None
    specs, failed = checked.specs, len(checked.problems)
    detector = Detector(settings, sources=[s.display for s in specs])
    dashboard = service = None
    interrupted = threading.Event()
    try:
        if not detector.loaded.calibrated:
            log.warning("%s: every verdict will be UNSURE", UNCALIBRATED_WARNING)
        log.info("model: %s on %s (%s)", detector.loaded.describe(), detector.engine.device, detector.engine.name)
        failed += open_sources(detector, specs)
        if args.sources and not detector.sources:
            return 1

        def on_signal(signum: int, *_: object) -> None:
            interrupted.set()
            detector.stop(StopReason.CTRL_C if signum == signal.SIGINT else StopReason.SIGTERM)

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, on_signal)
        dashboard = (
            start_dashboard(settings.store.db, host=args.dashboard_address, **dashboard_options(settings))
            if args.dashboard
            else None
        )
        if dashboard:
            print(f"dashboard: {dashboard.url}", flush=True)
        if serving:
            extensions = default_extensions(detector, settings.service)
            service = Service(detector, settings.service, extensions, listener=checked.listener)
            print(f"service: {service.start()}", flush=True)
        log.info("session %s writing to %s; Ctrl-C stops", detector.session_id, settings.store.db)
        detector.run(args.duration, serve=serving)
        if service:
            service.stop()
        detector.close()
        if dashboard and not interrupted.is_set() and args.duration is None:
            log.info("the detector is done; the dashboard stays at %s until Ctrl-C", dashboard.url)
            interrupted.wait()
    finally:
        if service:
            service.stop()
        detector.close()
        if dashboard:
            dashboard.stop()
    for source in detector.sources:
        if source.last_error:
            print(f"warning: {source.last_error}", file=sys.stderr)
    with open_reader(settings.store.db) as reader:
        report = build_report(reader, detector.session_id)
    for stream in report.streams:
        if (line := stream.stopped_line()) is not None:
            print(line, file=sys.stderr)
    print_report(report)
    written = write_report(args.report, report) if args.report else True
    # A file cut short by the person's Ctrl-C is 130; by --duration, the API or the run's end, it is no error.
    if any(stream.stop_reason in (StopReason.CTRL_C, StopReason.SIGTERM) for stream in report.streams):
        return EXIT_INTERRUPTED
    return 1 if failed or not written else 0


def dashboard_options(settings: Settings) -> dict[str, Any]:
    """What the dashboard takes from the run's settings: the service's token, CA file and upload cap, the clips
    folder."""
    from stream.config.store_location import local_path

    clips = settings.clips.beside_store(local_path(settings.store.db)).directory
    service = settings.service
    return {"token": service.token, "tls_ca": service.tls_ca, "upload_max_mb": service.upload_max_mb, "clips": clips}


def dashboard_only(settings: Settings, address: str = "127.0.0.1") -> int:
    """Serve the dashboard over the store with the safe flags (127.0.0.1 unless told, no usage statistics) until a
    signal; the service's admin token and CA file go to it through its environment."""
    from dashboard.launch import start_dashboard

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with start_dashboard(settings.store.db, host=address, **dashboard_options(settings)) as dashboard:
        print(f"dashboard: {dashboard.url}", flush=True)
        log.info("serving the store %s; Ctrl-C stops", settings.store.db)
        stop.wait()
    return 0


def model_info(settings: Settings) -> int:
    from dataclasses import replace

    from model.engines import build_engine
    from model.spread import spread_of
    from model.summary import summarise
    from model.weights import resolve_weights
    from stream.capture.demo import astronaut_face_crops
    from stream.detector import cpu_calibration
    from stream.loop.verdicts import threshold_line, window_warning, with_checkpoint

    loaded = resolve_weights(settings.model.weights)
    engine = build_engine(loaded, settings.model.device, settings.model.cpu_engine, None, cpu_calibration(settings))
    for line in summarise(loaded, engine, astronaut_face_crops()).lines():
        print(line)
    policy = replace(settings.verdicts, calibrated=loaded.calibrated)
    print(threshold_line(with_checkpoint(policy, loaded.threshold), spread_of(loaded.metrics)))
    served = window_warning(loaded, settings.model.window)
    if served:
        print(f"warning: {served}")
    if engine.choice and engine.choice.line:
        print(f"engine choice: {engine.choice.line}")
    if engine.choice and engine.choice.gate:
        print(f"parity gate: {engine.choice.gate}")
    return 0


def check_early(args: argparse.Namespace) -> tuple[Settings, Checked | None] | int:
    """The config, then for a run all that stream/preflight.py checks without the model: a usage error is one line
    and exit 2; sources that cannot be used, one line each (exit 1 when none is left)."""
    from stream.config import ConfigError
    from stream.preflight import PreflightError, preflight

    try:
        settings = resolve_settings(args)
        if args.dashboard_only or args.model_info:
            return settings, None
        checked = preflight(settings, args.sources, args.report)
    except (ConfigError, PreflightError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for problem in checked.problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if args.sources and not checked.specs else (settings, checked)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(args.verbose)
    # torch's OpenMP threads spin while they wait; when the cores are shared (MediaPipe, decoding, other programs)
    # that spinning took `--cpu-engine torch` from 10 to ~1 crop/s. Read once, when torch loads: so, set here.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    checked = None
    try:
        early = check_early(args)
        if isinstance(early, int):
            return early
        settings, checked = early
        # Heavy: torch, MediaPipe, ONNX Runtime. A Ctrl-C while they load ends here, in one line.
        from dashboard.launch import DashboardError
        from model.engines import EngineError
        from model.weights import CheckpointError
        from stream.config import ConfigError
        from stream.faces.model_files import FaceModelError
        from stream.service.app import ServiceError
        from stream.store import StoreError

        user_errors = (
            ConfigError,
            CheckpointError,
            EngineError,
            StoreError,
            FaceModelError,
            DashboardError,
            ServiceError,
        )
        try:
            if args.dashboard_only:
                return dashboard_only(settings, args.dashboard_address)
            return model_info(settings) if checked is None else run(args, settings, checked)
        except user_errors as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:  # main() called without the handler below
        print("interrupted before the run started: nothing was scored", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if checked is not None:
            checked.close()


def interrupted_while_starting(*_: object) -> None:
    """Ctrl-C before the run has started (while torch loads, say): one line, no traceback."""
    print("interrupted before the run started: nothing was scored", file=sys.stderr)
    raise SystemExit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, interrupted_while_starting)  # until run() or dashboard_only() takes over
    sys.exit(main())
