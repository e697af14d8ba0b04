"""`--cpu-engine auto`: the fastest CPU engine here that passes the parity gate for this checkpoint and window.

Two questions, cached apart. How fast is each engine here? (model/engines/timing.py: per CPU, input shapes, engine
versions and candidates; measured once, ~20 s.) Does an engine keep this checkpoint's window scores? (the parity
gate, model/engines/parity.py: per weights, calibration crops, window, CPU and engine versions; seconds, plus the
export and int8 quantising of a new checkpoint's graphs.) The choice is the fastest timed candidate whose gate
passes. Candidates are gated fastest first and gating stops at the first pass, so a new checkpoint or window builds
one or two engines, not all. fp32 ONNX Runtime is the gate's reference and needs no gate. A candidate whose
runtime is missing is left out, and says why.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from model.cpu import cpu_description
from model.engines.base import Calibration, Engine, EngineChoice, EngineError
from model.engines.named import cpu_engine_named
from model.engines.onnxruntime_engine import OnnxEngine
from model.engines.onnxruntime_int8 import calibration_hash
from model.engines.parity import check_parity
from model.engines.timing import (
    BENCH_BATCHES,
    EngineTiming,
    engine_versions,
    measure,
    read_timing,
    short_hash,
    timing_key,
    timing_path,
    write_json,
    write_timing,
)
from model.weights import LoadedModel

log = logging.getLogger("deepfake_stream")

CANDIDATES = ("onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8")
REFERENCE = "onnxruntime"
BUILD_ERRORS = (EngineError, ImportError, RuntimeError)

EngineFactory = Callable[[str, LoadedModel, Path, Calibration], Engine]
Timer = Callable[[Mapping[str, Engine], int], dict[str, float]]


@dataclass(frozen=True)
class AutoChoice:
    """What `auto` chose on this machine for this checkpoint and window, and what it measured (crops/s)."""

    engine: str
    crops_per_s: float
    rates: dict[str, float] = field(default_factory=dict)  # every candidate timed on this CPU
    refused: dict[str, str] = field(default_factory=dict)  # candidate -> why it is not used
    gates: dict[str, str] = field(default_factory=dict)  # candidate -> the gate's one-line result
    cpu: str = ""
    key: str = ""  # the timing's cache key
    cached: bool = False  # the timing came from the cache

    def describe(self) -> str:
        """One line for `--model-info`, the status line's log and the session row."""
        others = ", ".join(f"{name} {rate:.0f}" for name, rate in self.rates.items() if name != self.engine)
        refused = "; ".join(f"{name}: {why}" for name, why in self.refused.items())
        return (
            f"auto chose {self.engine} at {self.crops_per_s:.0f} crops/s (batch {'/'.join(map(str, BENCH_BATCHES))}"
            f" on this CPU{', timing cached' if self.cached else ''})"
            + (f"; others {others}" if others else "")
            + (f"; not used: {refused}" if refused else "")
        )


@dataclass(frozen=True)
class GateResult:
    passed: bool
    line: str


def gate_key(loaded: LoadedModel, calibration: Calibration, cpu: str) -> str:
    """What a gate's result depends on, hashed: the weights, the crops it compares on, the window, the CPU (int8
    kernels differ by instruction set) and the engine versions."""
    parts = {
        "weights": loaded.weights_hash,
        "calibration": calibration_hash([*calibration.fit, *calibration.held_back], loaded.preprocessing),
        "window": calibration.window,
        "cpu": cpu,
        "versions": engine_versions(),
    }
    return short_hash(parts)


def gate_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"engine-gate-{key}.json"


def read_gates(path: Path) -> dict[str, GateResult]:
    try:
        data = json.loads(path.read_text())
        return {name: GateResult(bool(item["passed"]), str(item["line"])) for name, item in data.items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}  # absent or unreadable: gate again


def write_gates(path: Path, gates: Mapping[str, GateResult]) -> None:
    write_json(path, {name: {"passed": g.passed, "line": g.line} for name, g in gates.items()})


def _named(name: str, loaded: LoadedModel, cache_dir: Path, calibration: Calibration) -> Engine:
    return cpu_engine_named(name, loaded, cache_dir, calibration)


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def engine_timing(
    loaded: LoadedModel,
    cache_dir: Path,
    calibration: Calibration,
    candidates: Sequence[str],
    factory: EngineFactory,
    timer: Timer,
    built: dict[str, Engine],
) -> EngineTiming:
    """The cached timing for this CPU, or a new one (every candidate built into `built`, then timed)."""
    cpu = cpu_description()
    key = timing_key(loaded.arch, loaded.preprocessing.input_size, cpu, candidates)
    path = timing_path(cache_dir, key)
    cached = read_timing(path)
    if cached is not None and REFERENCE in cached.rates:
        return cached
    log.info("timing the CPU engines on this machine (once per CPU and engine versions; cached in %s)", cache_dir)
    began = time.monotonic()
    built[REFERENCE] = built.get(REFERENCE) or OnnxEngine(loaded, cache_dir)
    refused: dict[str, str] = {}
    for name in candidates:
        if name in built:
            continue
        try:
            built[name] = factory(name, loaded, cache_dir, calibration)
        except BUILD_ERRORS as error:
            refused[name] = _first_line(error)
    rates = timer(built, loaded.preprocessing.input_size)
    timing = EngineTiming(dict(sorted(rates.items(), key=lambda item: -item[1])), refused, cpu, key)
    write_timing(path, timing)
    log.info("timed %d CPU engines in %.1f s", len(rates), time.monotonic() - began)
    return timing


def choose_cpu_engine(
    loaded: LoadedModel,
    cache_dir: Path,
    calibration: Calibration,
    candidates: Sequence[str] | None = None,
    factory: EngineFactory = _named,
    timer: Timer = measure,
) -> Engine:
    """The chosen engine, built, with its `choice` set (how: auto). `factory` builds a candidate by name (tests hand
    in a deliberately wrong one), `timer` times built engines (tests count its calls); the reference is always fp32
    ONNX Runtime."""
    candidates = CANDIDATES if candidates is None else candidates
    built: dict[str, Engine] = {}
    timing = engine_timing(loaded, cache_dir, calibration, candidates, factory, timer, built)
    path = gate_path(cache_dir, gate_key(loaded, calibration, timing.cpu or cpu_description()))
    gates = read_gates(path)
    refused = {name: why for name, why in timing.refused.items() if name in candidates}
    chosen: Engine | None = None
    for name in (n for n in timing.rates if n in candidates or n == REFERENCE):  # fastest first
        if name == REFERENCE:
            chosen = built.get(name) or OnnxEngine(loaded, cache_dir)
            break
        if name in gates and not gates[name].passed:
            refused[name] = "refused by the parity gate"
            continue
        began = time.monotonic()
        try:
            candidate = built.get(name) or factory(name, loaded, cache_dir, calibration)
        except BUILD_ERRORS as error:
            refused[name] = f"could not be built: {_first_line(error)}"
            continue
        if name not in gates:
            if REFERENCE not in built:
                built[REFERENCE] = OnnxEngine(loaded, cache_dir)
            crops, window = calibration.held_back, calibration.window
            result = check_parity(built[REFERENCE], candidate, crops, loaded.preprocessing, window)
            gates[name] = GateResult(result.passed, result.describe())
            write_gates(path, gates)
            verdict = "PASS" if result.passed else "FAIL"
            took = time.monotonic() - began
            log.info(
                "parity gate for %s, this checkpoint, window %d: %s in %.1f s (with building it)",
                name,
                window,
                verdict,
                took,
            )
            if not result.passed:
                log.warning("the %s engine was refused by the parity gate: %s", name, result.describe())
        if gates[name].passed:
            chosen = candidate
            break
        refused[name] = "refused by the parity gate"
    if chosen is None:  # unreachable: the reference is always timed, and it needs no gate
        raise EngineError("no CPU engine passed the parity gate")
    choice = AutoChoice(
        engine=name,
        crops_per_s=timing.rates[name],
        rates={n: r for n, r in timing.rates.items() if n in candidates or n == REFERENCE},
        refused=refused,
        gates={n: g.line for n, g in gates.items() if n in candidates},
        cpu=timing.cpu,
        key=timing.key,
        cached=timing.cached,
    )
    log.info("%s", choice.describe())
    return _labelled(chosen, choice)


def _labelled(engine: Engine, choice: AutoChoice) -> Engine:
    engine.choice = EngineChoice(
        name=engine.name,
        how="auto",
        crops_per_s=choice.crops_per_s,
        gate=choice.gates.get(choice.engine, ""),
        line=choice.describe(),
    )
    return engine
