"""The CPU engines' micro-benchmark and its cache, keyed by what speed depends on: CPU, input shapes, engine versions.

A checkpoint's weights and the served window do not change how fast an engine runs, so they are not in the key: a
new checkpoint or `--window` reuses the timing and re-runs only the parity gate (model/engines/choice.py).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from model.engines.base import Engine
from model.engines.onnxruntime_int8 import RECIPE_VERSION
from model.engines.openvino_engine import openvino_version

BENCH_BATCHES = (1, 4)
ROUNDS = 3
SECONDS_PER_CELL = 0.3
TIMING_VERSION = 2  # bump when the way of timing changes, so cached timings are measured again


@dataclass(frozen=True)
class EngineTiming:
    """Crops/s of every candidate that could be built on this CPU (mean over BENCH_BATCHES), and why the others
    could not. Its fields are the cache file's keys: renaming one makes every cached timing unreadable (so re-timed).
    """

    rates: dict[str, float]
    refused: dict[str, str] = field(default_factory=dict)  # candidate -> why it could not be built
    cpu: str = ""
    key: str = ""
    cached: bool = False


def engine_versions() -> dict[str, str | None]:
    """The versions of every runtime and recipe an engine's speed depends on (part of the timing's and the gate's
    cache keys)."""
    import onnxruntime  # here, not at the top: kept out of start-up (see onnxruntime_engine.py)

    return {
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino_version(),
        "torch": torch.__version__,
        "quantize_recipe": str(RECIPE_VERSION),
        "timing": str(TIMING_VERSION),
    }


def short_hash(parts: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def timing_key(arch: str, input_size: int, cpu: str, candidates: Sequence[str]) -> str:
    """What the timing depends on, hashed: the CPU, the graph's shapes (arch, crop size, batches), the engine
    versions and the candidates. Not the weights, not the window."""
    shapes = {"arch": arch, "input_size": input_size, "batches": list(BENCH_BATCHES)}
    return short_hash({"cpu": cpu, "shapes": shapes, "versions": engine_versions(), "candidates": list(candidates)})


def timing_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"engine-timing-{key}.json"


def read_timing(path: Path) -> EngineTiming | None:
    try:
        data = json.loads(path.read_text())
        timing = EngineTiming(**{**data, "cached": True})
    except (OSError, ValueError, TypeError):
        return None  # absent or unreadable: time again
    valid = isinstance(timing.rates, dict) and timing.rates and isinstance(timing.refused, dict)
    return timing if valid else None


def write_json(path: Path, document: Mapping[str, object]) -> None:
    """Rename into place, so a concurrent process never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps(document, indent=1))
    partial.replace(path)


def write_timing(path: Path, timing: EngineTiming) -> None:
    write_json(path, {**asdict(timing), "cached": False})


def measure(engines: Mapping[str, Engine], size: int, batches: Sequence[int] = BENCH_BATCHES) -> dict[str, float]:
    """Crops/s of each engine, the mean over `batches` of the best of ROUNDS interleaved timings (interleaving makes
    other work on the machine slow every engine alike instead of whichever ran at the wrong moment)."""
    generator = torch.Generator().manual_seed(0)
    inputs = {batch: torch.randn(batch, 3, size, size, generator=generator) for batch in batches}
    best: dict[tuple[str, int], float] = {}
    for engine in engines.values():  # warm up: the first calls allocate and pick kernels
        for batch in inputs.values():
            engine.encode(batch)
    for _ in range(ROUNDS):
        for batch_size, batch in inputs.items():
            for name, engine in engines.items():
                calls, start = 0, time.perf_counter()
                while (elapsed := time.perf_counter() - start) < SECONDS_PER_CELL:
                    engine.encode(batch)
                    calls += 1
                rate = calls * batch_size / elapsed
                best[name, batch_size] = max(best.get((name, batch_size), 0.0), rate)
    return {name: sum(best[name, b] for b in inputs) / len(inputs) for name in engines}
