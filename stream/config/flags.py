"""The flags both command lines share (run_stream.py, `python -m stream.cluster`), each over one config key."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.cli import positive_int
from model.labels import CPU_ENGINES, MAX_WINDOW, MIN_WINDOW
from stream.config.sections import WINDOW_MODES


def window_length(text: str) -> int:
    """A window any checkpoint serves: MIN_WINDOW..MAX_WINDOW frames."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not MIN_WINDOW <= value <= MAX_WINDOW:
        raise argparse.ArgumentTypeError(f"must be {MIN_WINDOW}..{MAX_WINDOW} frames, got {value}")
    return value


@dataclass(frozen=True)
class Flag:
    """A flag that overrides the config key `key`; not given, it is None and the config's value stands."""

    key: str
    help: str | None = None
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    negatable: bool = False  # --NAME / --no-NAME


# By argparse dest (--cpu-engine: cpu_engine), in the order run_stream.py --help lists them.
SHARED_FLAGS: dict[str, Flag] = {
    "weights": Flag("model.weights", "auto | a checkpoint file | the folder you downloaded checkpoints into"),
    "window": Flag("model.window", f"frames per window, {MIN_WINDOW}..{MAX_WINDOW}", window_length),
    "stride": Flag("model.stride", "score each face every N scored crops", positive_int),
    "window_mode": Flag("model.window_mode", choices=WINDOW_MODES),
    "threshold": Flag(
        "verdicts.threshold", "verdict threshold in (0, 1) (default: the checkpoint's calibrated one, or 0.5)", float
    ),
    "device": Flag("model.device", "auto | cpu | cuda | cuda:N"),
    "cpu_engine": Flag(
        "model.cpu_engine",
        "auto: the fastest engine that passes the parity gate on this CPU (measured once, cached)",
        choices=CPU_ENGINES,
    ),
    "db": Flag(
        "store.db",
        "the score store: a SQLite file or postgresql://user@host:port/dbname (password: PGPASSWORD, ~/.pgpass)",
    ),
    "realtime": Flag("sources.realtime", "pace files like a live stream", negatable=True),
}

# run_stream.py's flags over the service's keys (after --serve in its --help).
SERVICE_FLAGS: dict[str, Flag] = {
    "tls_cert": Flag("service.tls_cert", "serve https:// with this PEM certificate (chain); needs --tls-key", Path),
    "tls_key": Flag("service.tls_key", "the PEM private key of --tls-cert", Path),
    "tls_ca": Flag("service.tls_ca", "the PEM CA the dashboard verifies the service's certificate with", Path),
    "public_url": Flag(
        "service.public_url", "the URL clients call (stored in the session instead of the bind address)"
    ),
}
_FLAGS = {**SHARED_FLAGS, **SERVICE_FLAGS}


def add_flags(parser: argparse.ArgumentParser, names: Iterable[str], helps: Mapping[str, str] | None = None) -> None:
    """Add the flags `names` (of SHARED_FLAGS or SERVICE_FLAGS) to `parser` in that order; `helps` words a flag's
    help for that command only."""
    for name in names:
        flag = _FLAGS[name]
        options: dict[str, Any] = {"help": (helps or {}).get(name, flag.help)}
        if flag.negatable:
            options["action"] = argparse.BooleanOptionalAction
        if flag.type is not None:
            options["type"] = flag.type
        if flag.choices is not None:
            options["choices"] = flag.choices
        parser.add_argument("--" + name.replace("_", "-"), **options)


def flag_overrides(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The flags `names` of parsed `args` as config keys (None: not given)."""
    return {_FLAGS[name].key: getattr(args, name) for name in names}


VERBOSE_HELP = (
    "also log other libraries' INFO lines (aiortc, aioice, uvicorn with its access log, httpx, Ray, ...); "
    "without it they log only warnings and errors"
)


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """`--verbose`: not a config key (it changes what is logged, never what is computed)."""
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
