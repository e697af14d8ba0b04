"""`python -m stream.cluster cameras.yaml [--address auto|HOST:PORT] --db postgresql://…`: the cameras of
cameras.yaml (stream/cameras.py) spread over detector actors of a Ray cluster, a dead actor's or node's cameras
moved to live ones, and where each camera runs kept in the store (stream/coordinator.py).

Without `--address` it starts a one-machine Ray cluster of its own, bound to 127.0.0.1 with Ray's dashboard off;
with `--address auto` (or HOST:PORT of a head started by `ray start --head`) it joins that cluster as its driver.
`RAY_USAGE_STATS_ENABLED=0` is set before Ray is imported: nothing is sent to Ray's usage statistics. Each detector
writes its own session to the store given with `--db` (a PostgreSQL URL for several machines; a SQLite path only
when every detector runs on this machine); each machine needs the password in its own PGPASSWORD or ~/.pgpass.

Only the standard library and the cameras file's parser load before the arguments are checked, so mistakes answer at
once with one `error:` line (exit 2); Ctrl-C or SIGTERM stops every detector cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.labels import MAX_WINDOW, MIN_WINDOW

if TYPE_CHECKING:
    from stream.cluster.cameras import CameraPlan
    from stream.config import Settings

log = logging.getLogger("deepfake_stream")
LOOPBACK = "127.0.0.1"
# Each flag overrides the config key of the same meaning (as in run_stream.py).
FLAG_KEYS = {
    "weights": "model.weights",
    "window": "model.window",
    "stride": "model.stride",
    "device": "model.device",
    "cpu_engine": "model.cpu_engine",
    "db": "store.db",
}


class OneLineParser(argparse.ArgumentParser):
    """Usage mistakes get one line on stderr, not argparse's usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _number(kind: type, low: float) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if not (math.isfinite(value) and value >= low):
            raise argparse.ArgumentTypeError(f"must be at least {low:g}, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m stream.cluster", description="Cameras spread over detector actors of a Ray cluster."
    )
    parser.add_argument("cameras", type=Path, help="YAML: the cameras (name, source) and the detectors' resources")
    parser.add_argument(
        "--address",
        help="join this Ray cluster (auto, or HOST:PORT of `ray start --head`); default: start one on 127.0.0.1",
    )
    parser.add_argument("--db", help="the score store: postgresql://user@host:port/dbname (or a SQLite file)")
    parser.add_argument("--config", type=Path, help="the detectors' config, YAML over configs/default.yaml")
    parser.add_argument("--weights", help="auto | a checkpoint file (on every detector's machine)")
    window = _number(int, MIN_WINDOW)
    parser.add_argument("--window", type=window, help=f"frames per window, {MIN_WINDOW}..{MAX_WINDOW}")
    parser.add_argument("--stride", type=_number(int, 1), help="score each face every N scored crops")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--cpu-engine", choices=["auto", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8", "torch"]
    )
    parser.add_argument("--detectors", type=_number(int, 1), help="detector actors (default: detector.count)")
    parser.add_argument("--num-cpus", type=_number(float, 0), help="CPU cores per detector (detector.num_cpus)")
    parser.add_argument("--num-gpus", type=_number(float, 0), help="GPUs per detector (detector.num_gpus)")
    parser.add_argument("--max-cameras", type=_number(int, 1), help="cameras per detector (detector.max_cameras)")
    parser.add_argument("--duration", type=_number(float, 0), help="stop after this many seconds")
    args = parser.parse_args(argv)
    if args.window is not None and args.window > MAX_WINDOW:
        parser.error(f"argument --window: must be {MIN_WINDOW}..{MAX_WINDOW} frames, got {args.window}")
    return args


def detector_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The resource flags given, as keys of the cameras file's `detector:` section."""
    flags = {"num_cpus": args.num_cpus, "num_gpus": args.num_gpus, "max_cameras": args.max_cameras}
    flags["count"] = args.detectors
    return {key: value for key, value in flags.items() if value is not None}


def with_flags(plan: CameraPlan, args: argparse.Namespace) -> CameraPlan:
    """The plan with the resource flags over the file's `detector:` section."""
    from stream.cluster.cameras import CameraListError

    try:
        return replace(plan, detector=replace(plan.detector, **detector_flags(args)))
    except ValueError as error:
        raise CameraListError(f"flags: {error}") from None


def resolve_settings(args: argparse.Namespace) -> Settings:
    from stream.config import DEFAULT_CONFIG, load_settings

    return load_settings(args.config or DEFAULT_CONFIG, {key: getattr(args, flag) for flag, key in FLAG_KEYS.items()})


def ray_environment(address: str | None) -> None:
    """Set before Ray is imported (it reads them then, and its processes inherit them): no usage statistics, and
    without `address` a cluster that listens on loopback only.

    Ray's own processes bind to their node's IP address, and `ray.init` turns a 127.0.0.1 given to it into the
    machine's address. Ray keeps a local-only mode for machines that must not be reached from outside (its default
    on macOS and Windows): `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` makes the node's address 127.0.0.1, so every server
    of a cluster started here listens on loopback only (tests/test_cluster.py checks)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if not address:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


def start_ray(address: str | None) -> None:
    """Join the cluster at `address`, or start one on this machine bound to loopback (`ray_environment` first);
    Ray's dashboard is not started either way."""
    import ray

    if address:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(_node_ip_address=LOOPBACK, include_dashboard=False, logging_level=logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    from stream.cluster.cameras import CameraListError, load_cameras

    try:  # the cameras file first: it needs no model library, so its mistakes answer at once
        plan = with_flags(load_cameras(args.cameras), args)
    except CameraListError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from stream.config import ConfigError
    from stream.store import StoreError, open_writer

    try:
        settings = resolve_settings(args)
        writer = open_writer(settings.store.db, settings.store.retention_days)
    except (ConfigError, StoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    ray_environment(args.address)
    from stream.cluster.coordinator import ClusterError  # imports Ray

    try:
        start_ray(args.address)
        return run(args, plan, settings, writer)
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ConnectionError as error:  # no Ray cluster at --address
        print(f"error: cannot join the Ray cluster at {args.address}: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    finally:
        writer.close()
        import ray

        if ray.is_initialized():
            ray.shutdown()


def run(args: argparse.Namespace, plan: CameraPlan, settings: Settings, writer: Any) -> int:
    import ray

    from stream.cluster.coordinator import Coordinator

    nodes = len([n for n in ray.nodes() if n.get("Alive")])
    if isinstance(settings.store.db, Path):  # SQLite: the same file for every detector, wherever it starts
        settings = replace(settings, store=replace(settings.store, db=settings.store.db.resolve()))
        if nodes > 1:
            log.warning(
                "cluster: a SQLite store is one file on this machine: detectors on other nodes need --db postgresql://…"
            )
    resources = ray.cluster_resources()
    actors = plan.detector.actors_for(resources.get("CPU", 0.0), resources.get("GPU", 0.0))
    coordinator = Coordinator(args.cameras, plan, settings, writer, actors, detector_flags=detector_flags(args))
    log.info(
        "cluster %s: %d camera(s) over %d detector(s) (%g CPU, %g GPU, up to %d cameras each) on %d node(s)",
        coordinator.cluster_id,
        len(plan.cameras),
        actors,
        plan.detector.num_cpus,
        plan.detector.num_gpus,
        plan.detector.max_cameras,
        nodes,
    )
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: coordinator.stop())
    coordinator.run(args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
