"""Shared fixtures: one random seed-architecture model per session, a cache dir for exported graphs, a
score store the dashboard tests point the app at (`db`, `writer`), and a PostgreSQL server for the session
(`pg_server`: started on first use, stopped at the end)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard import data
from model.weights import LoadedModel, random_model
from stream.store import ScoreWriter, open_writer
from tests.netns import require
from tests.pg_server import PostgresServer, postgres_server, server_missing


@pytest.fixture(scope="session")
def seed_model() -> LoadedModel:
    """The uncalibrated seeded model (do not mutate: deep-copy first)."""
    return random_model()


@pytest.fixture(scope="session")
def engine_cache(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("engine-cache")


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The store's path, handed to the app through DEEPFAKE_STREAM_DB (the file is not made here)."""
    path = tmp_path / "runs" / "deepfake.db"
    monkeypatch.setenv(data.DB_ENV, str(path))
    return path


@pytest.fixture
def writer(db: Path) -> Iterator[ScoreWriter]:
    with open_writer(db) as store:
        yield store


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on a unix socket in a temp dir (skips without `initdb`; under CI that fails)."""
    missing = server_missing()
    if missing is not None:
        require(missing)
    with postgres_server() as server:
        yield server
