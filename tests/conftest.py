"""Shared fixtures: one random seed-architecture model per session, a cache dir for exported graphs."""

from __future__ import annotations

import pytest

from model.weights import LoadedModel, random_model


@pytest.fixture(scope="session")
def seed_model() -> LoadedModel:
    """The uncalibrated seeded model (do not mutate: deep-copy first)."""
    return random_model()


@pytest.fixture(scope="session")
def engine_cache(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("engine-cache")
