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
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.cli import OneLineParser, non_negative_float, positive_int
from stream.config.flags import add_flags, add_verbose, flag_overrides
from stream.config.logs import configure_logging
from stream.text import one_line

if TYPE_CHECKING:
    from stream.cluster.cameras import CameraPlan
    from stream.config import Settings

log = logging.getLogger("deepfake_stream")
LOOPBACK = "127.0.0.1"
# The flags run_stream.py also has (stream/config/flags.py), each over one config key; --db first in --help.
DETECTOR_FLAGS = ("db", "weights", "window", "stride", "device", "cpu_engine")
HELPS = {
    "db": "the score store: postgresql://user@host:port/dbname (or a SQLite file)",
    "weights": "auto | a checkpoint file (on every detector's machine)",
}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m stream.cluster", description="Cameras spread over detector actors of a Ray cluster."
    )
    parser.add_argument("cameras", type=Path, help="YAML: the cameras (name, source) and the detectors' resources")
    parser.add_argument(
        "--address",
        help="join this Ray cluster (auto, or HOST:PORT of `ray start --head`); default: start one on 127.0.0.1",
    )
    add_flags(parser, DETECTOR_FLAGS[:1], HELPS)
    parser.add_argument("--config", type=Path, help="the detectors' config, YAML over configs/default.yaml")
    add_flags(parser, DETECTOR_FLAGS[1:], HELPS)
    parser.add_argument("--detectors", type=positive_int, help="detector actors (default: detector.count)")
    parser.add_argument("--num-cpus", type=non_negative_float, help="CPU cores per detector (detector.num_cpus)")
    parser.add_argument("--num-gpus", type=non_negative_float, help="GPUs per detector (detector.num_gpus)")
    parser.add_argument("--max-cameras", type=positive_int, help="cameras per detector (detector.max_cameras)")
    parser.add_argument("--duration", type=non_negative_float, help="stop after this many seconds")
    add_verbose(parser)
    return parser.parse_args(argv)


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
    from stream.config import DEFAULT_CONFIG, environment_overrides, load_settings

    flags = environment_overrides(os.environ) | flag_overrides(args, DETECTOR_FLAGS)
    return load_settings(args.config or DEFAULT_CONFIG, flags)


def ray_environment(address: str | None, terminal: bool) -> None:
    """Set before Ray is imported (it reads them then, and its processes inherit them): no usage statistics, and
    without `address` a cluster that listens on loopback only. When stderr is not a `terminal` (a log file, a pipe),
    the detectors' lines Ray forwards come without colour codes and each as it is, not folded into Ray's
    `[repeated 3x across cluster]` (a variable the user set is left as it is).

    Ray's own processes bind to their node's IP address, and `ray.init` turns a 127.0.0.1 given to it into the
    machine's address. Ray keeps a local-only mode for machines that must not be reached from outside (its default
    on macOS and Windows): `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` makes the node's address 127.0.0.1, so every server
    of a cluster started here listens on loopback only (tests/test_cluster.py checks)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if not address:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if not terminal:
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def start_ray(address: str | None, verbose: bool = False) -> None:
    """Join the cluster at `address`, or start one on this machine bound to loopback (`ray_environment` first);
    Ray's dashboard is not started either way, and Ray logs only its warnings unless `verbose`."""
    import ray

    level = logging.INFO if verbose else logging.WARNING
    if address:
        ray.init(address=address, include_dashboard=False, logging_level=level)
    else:
        ray.init(_node_ip_address=LOOPBACK, include_dashboard=False, logging_level=level)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(args.verbose)
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
    ray_environment(args.address, terminal=sys.stderr.isatty())
    from stream.cluster.coordinator import ClusterError  # imports Ray

    try:
        start_ray(args.address, args.verbose)
        return run(args, plan, settings, writer)
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ConnectionError as error:  # no Ray cluster at --address
        print(f"error: cannot join the Ray cluster at {args.address}: {one_line(error)}", file=sys.stderr)
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
    coordinator = Coordinator(
        args.cameras, plan, settings, writer, actors, detector_flags=detector_flags(args), verbose=args.verbose
    )
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
