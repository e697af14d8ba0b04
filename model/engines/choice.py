"""`--cpu-engine auto`: the fastest CPU engine that passes the parity gate on this machine, measured once and cached.

The short micro-benchmark runs at first use; its result is cached per (weights, calibration crops, CPU, engine
versions, recipe), so it is re-run when any of them changes.

Every candidate other than fp32 ONNX Runtime (the gate's reference) is gated first; the ones that pass are timed
interleaved, best of `ROUNDS`, at batch 1 and 4 (the live path mostly encodes one to a few crops per call), and the
one with the highest mean crops/s wins. A candidate whose runtime is missing is left out, and says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from model.cpu import cpu_description
from model.engines.base import Calibration, Engine, EngineChoice, EngineError
from model.engines.named import cpu_engine_named
from model.engines.onnxruntime_engine import OnnxEngine
from model.engines.onnxruntime_int8 import RECIPE_VERSION, calibration_hash
from model.engines.openvino_engine import openvino_version
from model.engines.parity import check_parity
from model.weights import LoadedModel

log = logging.getLogger("deepfake_stream")

CANDIDATES = ("onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8")
REFERENCE = "onnxruntime"
BENCH_BATCHES = (1, 4)
ROUNDS = 3
SECONDS_PER_CELL = 0.3
CHOICE_VERSION = 1  # bump when the way of choosing changes, so cached choices are made again


@dataclass(frozen=True)
class AutoChoice:
    """What `auto` chose on this machine, and what it measured (crops/s, mean over BENCH_BATCHES): the cached record.

    Its fields are the cache file's keys: renaming one makes every cached choice unreadable (so made again).
    """

    engine: str
    crops_per_s: float
    rates: dict[str, float] = field(default_factory=dict)  # every candidate that passed the gate
    refused: dict[str, str] = field(default_factory=dict)  # candidate -> why it was not timed
    gates: dict[str, str] = field(default_factory=dict)  # candidate -> the gate's one-line result
    cpu: str = ""
    key: str = ""
    cached: bool = False

    def describe(self) -> str:
        """One line for `--model-info`, the status line's log and the session row."""
        others = ", ".join(f"{name} {rate:.0f}" for name, rate in self.rates.items() if name != self.engine)
        refused = "; ".join(f"{name}: {why}" for name, why in self.refused.items())
        return (
            f"auto chose {self.engine} at {self.crops_per_s:.0f} crops/s (batch {'/'.join(map(str, BENCH_BATCHES))}"
            f" on this CPU{', cached' if self.cached else ''})"
            + (f"; others {others}" if others else "")
            + (f"; not used: {refused}" if refused else "")
        )


def engine_versions() -> dict[str, str | None]:
    """The versions of every runtime and recipe a choice depends on (part of its cache key)."""
    import onnxruntime  # here, not at the top: kept out of start-up (see onnxruntime_engine.py)

    return {
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino_version(),
        "torch": torch.__version__,
        "quantize_recipe": str(RECIPE_VERSION),
        "choice": str(CHOICE_VERSION),
    }


def choice_key(loaded: LoadedModel, calibration: Calibration, cpu: str, candidates: Sequence[str]) -> str:
    """What the choice depends on, hashed: a change in any of them makes the choice again."""
    parts = {
        "weights": loaded.weights_hash,
        "calibration": calibration_hash([*calibration.fit, *calibration.held_back], loaded.preprocessing),
        "window": calibration.window,
        "cpu": cpu,
        "versions": engine_versions(),
        "candidates": list(candidates),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]


def _cache_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"engine-choice-{key}.json"


def _read_cached(path: Path) -> AutoChoice | None:
    try:
        data = json.loads(path.read_text())
        return AutoChoice(**{**data, "cached": True})
    except (OSError, ValueError, TypeError):
        return None  # absent or unreadable: choose again


def _write_cached(path: Path, choice: AutoChoice) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_text(json.dumps({**asdict(choice), "cached": False}, indent=1))
    partial.replace(path)


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


EngineFactory = Callable[[str, LoadedModel, Path, Calibration], Engine]


def _named(name: str, loaded: LoadedModel, cache_dir: Path, calibration: Calibration) -> Engine:
    return cpu_engine_named(name, loaded, cache_dir, calibration)


def choose_cpu_engine(
    loaded: LoadedModel,
    cache_dir: Path,
    calibration: Calibration,
    candidates: Sequence[str] | None = None,
    factory: EngineFactory = _named,
) -> Engine:
    """The chosen engine, built, with its `choice` set (how: auto). `factory` builds a candidate by name (tests hand
    in a deliberately wrong one); the reference is always fp32 ONNX Runtime."""
    candidates = CANDIDATES if candidates is None else candidates
    cpu = cpu_description()
    key = choice_key(loaded, calibration, cpu, candidates)
    path = _cache_path(cache_dir, key)
    cached = _read_cached(path)
    if cached is not None and cached.engine in candidates:
        engine = (
            OnnxEngine(loaded, cache_dir)
            if cached.engine == REFERENCE
            else factory(cached.engine, loaded, cache_dir, calibration)
        )
        return _labelled(engine, cached)

    log.info("choosing the CPU engine for this machine and checkpoint (once; cached in %s)", cache_dir)
    reference = OnnxEngine(loaded, cache_dir)
    passed: dict[str, Engine] = {REFERENCE: reference}
    refused: dict[str, str] = {}
    gates: dict[str, str] = {}
    for name in candidates:
        if name == REFERENCE:
            continue
        try:
            candidate = factory(name, loaded, cache_dir, calibration)
        except (EngineError, ImportError, RuntimeError) as error:
            refused[name] = str(error).splitlines()[0] if str(error) else type(error).__name__
            continue
        result = check_parity(reference, candidate, calibration.held_back, loaded.preprocessing, calibration.window)
        gates[name] = result.describe()
        if result.passed:
            passed[name] = candidate
        else:
            refused[name] = "refused by the parity gate"
            log.warning("the %s engine was refused by the parity gate: %s", name, result.describe())
    rates = measure(passed, loaded.preprocessing.input_size)
    winner = max(rates, key=rates.__getitem__)
    choice = AutoChoice(
        engine=winner,
        crops_per_s=rates[winner],
        rates=dict(sorted(rates.items(), key=lambda item: -item[1])),
        refused=refused,
        gates=gates,
        cpu=cpu,
        key=key,
    )
    _write_cached(path, choice)
    log.info("%s", choice.describe())
    return _labelled(passed[winner], choice)


def _labelled(engine: Engine, choice: AutoChoice) -> Engine:
    engine.choice = EngineChoice(
        name=engine.name,
        how="auto",
        crops_per_s=choice.crops_per_s,
        gate=choice.gates.get(choice.engine, ""),
        line=choice.describe(),
    )
    return engine
