"""Quiet by default: the detector's own lines at INFO, other libraries' (aiortc, aioice, uvicorn, httpx, Ray) only
from WARNING unless `--verbose`, which both command lines take; a cluster whose stderr is not a terminal gets Ray's
forwarded lines without colour codes and without `[repeated 3x across cluster]`."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

import run_stream
from stream.cluster import cli as cluster_cli
from stream.config.logs import CHATTY_LOGGERS, configure_logging

pytestmark = pytest.mark.fast  # make test-fast
CHATTY = ("aiortc.rtcpeerconnection", "aioice.ice", "uvicorn.error", "uvicorn.access", "httpx", "ray")


@pytest.fixture
def levels() -> Iterator[None]:
    """The levels of the root, ours and the chatty libraries' loggers put back after the test."""
    loggers = [logging.getLogger(name) for name in ("", "deepfake_stream", *CHATTY_LOGGERS)]
    saved = [logger.level for logger in loggers]
    try:
        yield
    finally:
        for logger, level in zip(loggers, saved, strict=True):
            logger.setLevel(level)


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What gets through to the handlers (caplog's sits on the root, as the command line's stderr handler does)."""
    caplog.clear()
    for name in CHATTY:
        logging.getLogger(name).info("%s: an INFO line", name)
    logging.getLogger("aioice.ice").warning("aioice: a warning")
    logging.getLogger("deepfake_stream").info("ours: a status line")
    return [record.getMessage() for record in caplog.records]


def test_other_libraries_say_only_their_warnings_by_default(levels, caplog) -> None:
    for name in ("uvicorn.error", "uvicorn.access", "ray"):  # as uvicorn and Ray leave them once they have run
        logging.getLogger(name).setLevel(logging.INFO)
    configure_logging(run_stream.parse_args(["demo"]).verbose)
    assert said(caplog) == ["aioice: a warning", "ours: a status line"]


def test_verbose_lets_their_info_lines_through(levels, caplog) -> None:
    configure_logging(run_stream.parse_args(["demo", "--verbose"]).verbose)
    assert said(caplog) == [
        *(f"{name}: an INFO line" for name in CHATTY),
        "aioice: a warning",
        "ours: a status line",
    ]


def test_the_cluster_takes_verbose_too() -> None:
    assert cluster_cli.parse_args(["cameras.yaml", "--verbose"]).verbose
    assert not cluster_cli.parse_args(["cameras.yaml"]).verbose


@pytest.mark.parametrize("terminal", [True, False])
def test_a_cluster_logging_to_a_file_gets_no_colours_and_no_folded_lines(monkeypatch, terminal: bool) -> None:
    for name in ("RAY_COLOR_PREFIX", "RAY_DEDUP_LOGS", "RAY_USAGE_STATS_ENABLED", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
        monkeypatch.delenv(name, raising=False)
    cluster_cli.ray_environment(None, terminal=terminal)
    expected = None if terminal else "0"
    assert (os.environ.get("RAY_COLOR_PREFIX"), os.environ.get("RAY_DEDUP_LOGS")) == (expected, expected)
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"


def test_what_the_user_set_for_ray_stands(monkeypatch) -> None:
    monkeypatch.setenv("RAY_DEDUP_LOGS", "1")
    monkeypatch.delenv("RAY_COLOR_PREFIX", raising=False)
    cluster_cli.ray_environment("auto", terminal=False)
    assert (os.environ["RAY_DEDUP_LOGS"], os.environ["RAY_COLOR_PREFIX"]) == ("1", "0")
