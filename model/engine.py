"""Runs `encode_frames` on the chosen backend: PyTorch (CUDA, and the CPU reference), or on the CPU ONNX Runtime or
OpenVINO (model/openvino_engine.py) over the ONNX graph exported from the loaded weights (cached by their hash).

Every CPU engine other than fp32 ONNX Runtime and torch is used only after the parity gate (model/parity.py);
`auto` picks the fastest that passes on this machine (model/engine_choice.py).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn

from model.labels import CPU_ENGINES, CUDA_INDEX, DEVICES, GATED_CPU_ENGINES, is_device_name
from model.network import FrameOutputs, SeedNet, TemporalNet, WindowMode
from model.weights import LoadedModel

log = logging.getLogger("deepfake_stream")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


class EngineError(Exception):
    """The requested device or engine cannot run here (e.g. --device cuda without a GPU)."""


class Engine(Protocol):
    """What the pipeline needs from a backend."""

    name: str
    device: torch.device

    def encode(self, batch: Tensor) -> FrameOutputs:
        """[N, 3, S, S] normalised crops on `device` -> per-crop outputs as CPU float32 tensors."""
        ...

    def score(self, window: FrameOutputs, mode: WindowMode) -> Tensor:
        """Cached outputs [B, T, ...] -> p_fake [B] on the CPU."""
        ...


def resolve_device(device: str) -> torch.device:
    """`auto` picks CUDA when present; asking for CUDA (or a GPU index) that is not there is an EngineError."""
    if not isinstance(device, str) or not is_device_name(device):
        raise EngineError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EngineError(f"--device {device} was asked for but no CUDA GPU is available; use --device auto or cpu")
        index = CUDA_INDEX.fullmatch(device)
        count = torch.cuda.device_count()
        if index is not None and int(index.group(1)) >= count:
            raise EngineError(
                f"--device {device} was asked for but this machine has {count} CUDA GPU(s): cuda:0..cuda:{count - 1}"
            )
    return torch.device(device)


def cpu_budget() -> int:
    """How many CPUs this process may use: its affinity mask, lowered by a cgroup CPU quota (containers).

    Neither torch's nor ONNX Runtime's default sees a quota, so a container allowed 2 CPUs on a 64-core host
    would start 64 threads that contend for 2.
    """
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota()
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")) -> float | None:
    """This process's cgroup CPU limit in CPUs (v2 `cpu.max`, v1 `cpu.cfs_quota_us`); None when unlimited.

    `membership` is /proc/self/cgroup's format (`id:controllers:/group`); `root` is where cgroups are mounted.
    """
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, group = parts
        v2 = controllers == ""
        if not v2 and "cpu" not in controllers.split(","):
            continue
        mount = root if v2 else root / controllers
        for folder in (mount / group.lstrip("/"), mount):  # the process's own group, else the mount's root
            quota = _read_cpu_quota(folder, v2)
            if quota is not None:
                return quota
    return None


def _read_cpu_quota(folder: Path, v2: bool) -> float | None:
    try:
        if v2:
            quota, period = (folder / "cpu.max").read_text().split()  # "<quota|max> <period>"
        else:
            quota, period = ((folder / f"cpu.cfs_{n}_us").read_text().strip() for n in ("quota", "period"))
        return None if quota in ("max", "-1") else float(quota) / float(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def set_torch_cpu_threads(threads: int = 0) -> int:
    """Give torch an explicit intra-op thread count (`threads`, else `cpu_budget()`); one inter-op thread.

    torch's default follows the affinity mask but not a cgroup quota, and nothing else in the process
    should be left to change it silently. The inter-op count can only be set once per process, before any
    parallel work: a later call keeps what is there. Returns the intra-op count now in force.
    """
    count = threads or cpu_budget()
    torch.set_num_threads(count)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    return torch.get_num_threads()


@contextlib.contextmanager
def _native_cpu_lstm() -> Iterator[None]:
    """Run a CPU LSTM on torch's own kernel instead of oneDNN's.

    oneDNN's CPU LSTM reorders its weights (2 x 64 MB for the seed's LSTM) on every call: the seed's one step
    from zero state then takes ~120 ms at any batch size, against ~6 ms natively (measured on the 2-core AMD
    EPYC; the results agree within 1e-6). The switch is process-wide for the few milliseconds of the step, so
    a convolution another thread runs meanwhile takes torch's native kernel too: slower, never wrong.
    """
    previous = torch.backends.mkldnn.set_flags(False, _fp32_precision=None)
    try:
        yield
    finally:
        torch.backends.mkldnn.set_flags(previous[0], _fp32_precision=None)


def score_on(network: SeedNet | TemporalNet, window: FrameOutputs, mode: WindowMode, device: torch.device) -> Tensor:
    moved = FrameOutputs(
        features=window.features.to(device, non_blocking=True),
        logits=None if window.logits is None else window.logits.to(device, non_blocking=True),
    )
    with torch.inference_mode():
        return network.score_window(moved, mode).float().cpu()


@dataclass
class TorchEngine:
    """PyTorch eager: the reference on the CPU; on CUDA channels_last with the backbone under autocast.

    On the CPU, `precision="bf16"` runs the backbone under bf16 autocast in channels_last (fast on CPUs with
    AVX512-BF16 or AMX); the LSTM step and the head stay fp32 everywhere.
    """

    network: SeedNet | TemporalNet
    device: torch.device
    precision: str = "auto"  # auto (fp32 everywhere, see below) | fp32 | fp16 | bf16
    name: str = ""
    threads: int = 0  # CPU only: torch's intra-op threads (0: the CPUs this process may use, `cpu_budget()`)
    # None: on CUDA, and on the CPU under bf16 autocast (oneDNN's bf16 convolutions are fastest in NHWC).
    # The backbone is converted in place: an engine changes the layout of the network it is given.
    channels_last: bool | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EngineError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.threads < 0:
            raise EngineError(f"threads must be 0 (all CPUs this process may use) or more, got {self.threads}")
        if self.device.type == "cpu":
            self.threads = set_torch_cpu_threads(self.threads)
        self.network = self.network.to(self.device).eval()
        if self.precision == "auto":
            # On an H200 (bench/encode.py --device cuda) fp32 beat bf16 and fp16 autocast at every batch the live
            # path makes (1.2-1.4x at batch 1..32; the calls are launch-bound, and autocast adds casts); fp16 won
            # only from batch 128.
            self.precision = "fp32"
        if self.channels_last is None:
            self.channels_last = self.device.type == "cuda" or self.precision == "bf16"
        if self.channels_last:
            self.network.model.to(memory_format=torch.channels_last)
        self.autocast_dtype = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}[self.precision]
        self.name = f"torch-{self.device.type}-{self.precision}"

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def encode(self, batch: Tensor) -> FrameOutputs:
        with torch.inference_mode():
            batch = batch.to(self.device, non_blocking=True)
            if self.channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                pooled = self.network.pooled_features(batch)
            # The LSTM step and the head stay in fp32.
            with _native_cpu_lstm() if self.device.type == "cpu" else contextlib.nullcontext():
                outputs = self.network.encode_pooled(pooled.float())
            return FrameOutputs(
                features=outputs.features.float().cpu(),
                logits=None if outputs.logits is None else outputs.logits.float().cpu(),
            )

    def score(self, window: FrameOutputs, mode: WindowMode) -> Tensor:
        return score_on(self.network, window, mode, self.device)


class _EncoderGraph(nn.Module):
    """`encode_frames` as a module with tensor outputs, the form the ONNX exporter takes."""

    def __init__(self, network: SeedNet | TemporalNet) -> None:
        super().__init__()
        self.network = network

    def forward(self, crops: Tensor) -> tuple[Tensor, ...]:
        outputs = self.network.encode_frames(crops)
        return (outputs.features,) if outputs.logits is None else (outputs.features, outputs.logits)


def default_cache_dir() -> Path:
    """Where exported graphs are kept: $DEEPFAKE_STREAM_CACHE, else ~/.cache/deepfake-stream."""
    explicit = os.environ.get("DEEPFAKE_STREAM_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepfake-stream"


def export_onnx(loaded: LoadedModel, cache_dir: Path, input_size: int) -> Path:
    """The encoder as an ONNX graph with a dynamic batch axis, exported once per weights hash."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"encoder-{loaded.arch}-{loaded.weights_hash}-{input_size}.onnx"
    if path.is_file():
        return path
    graph = _EncoderGraph(loaded.network).eval()
    outputs = ["features"] if loaded.arch == "temporal" else ["features", "logits"]
    # Write to a temporary name and rename, so a concurrent process never reads half a file.
    with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".onnx.part", delete=False) as handle:
        partial = Path(handle.name)
    try:
        # The TorchScript exporter warns about the LSTM's Python-side shape checks; the graph is verified
        # against PyTorch in tests, so the warnings only add noise to a user's terminal.
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                (torch.zeros(1, 3, input_size, input_size),),
                str(partial),
                input_names=["crops"],
                output_names=outputs,
                dynamic_axes={name: {0: "batch"} for name in ["crops", *outputs]},
                opset_version=17,
                dynamo=False,
            )
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


@dataclass
class OnnxEngine:
    """ONNX Runtime on the CPU over the graph exported from the loaded weights."""

    loaded: LoadedModel
    cache_dir: Path
    threads: int = 0
    name: str = "onnxruntime-cpu"
    gate_result: str = ""  # the parity gate's one-line result where it ran (build_engine), else ""
    choice: str = ""  # auto: what the micro-benchmark chose and measured (model/engine_choice.py), else ""

    def __post_init__(self) -> None:
        import onnxruntime as ort

        self.device = torch.device("cpu")
        self.graph_path = self._graph()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads or cpu_budget()
        options.inter_op_num_threads = 1
        # Spinning worker threads would steal the cores that decoding and face detection need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.graph_path), options, providers=["CPUExecutionProvider"])

    def _graph(self) -> Path:
        """The graph this engine runs: the fp32 export of the loaded weights (cached by their hash)."""
        return export_onnx(self.loaded, self.cache_dir, self.loaded.preprocessing.input_size)

    def encode(self, batch: Tensor) -> FrameOutputs:
        results = self.session.run(None, {"crops": batch.detach().cpu().float().contiguous().numpy()})
        features = torch.from_numpy(results[0])
        return FrameOutputs(features=features, logits=torch.from_numpy(results[1]) if len(results) > 1 else None)

    def score(self, window: FrameOutputs, mode: WindowMode) -> Tensor:
        return score_on(self.loaded.network, window, mode, self.device)


@dataclass
class OnnxInt8Engine(OnnxEngine):
    """ONNX Runtime on the CPU over the int8 graph: the backbone's convolutions quantised (model/quantize.py),
    calibrated on `calibration_crops` (real face crops, HxWx3 uint8 BGR, made by the caller with the serving
    pipeline's own cropper); pooling, the LSTM step and the head stay fp32. Use it only after the parity gate
    (model/parity.py) has passed it against the fp32 engine.
    """

    calibration_crops: Sequence[np.ndarray] = ()
    reduce_range: bool | None = None  # None: 7-bit weights only on CPUs without VNNI (see model/quantize.py)
    name: str = "onnxruntime-int8"

    def _graph(self) -> Path:
        from model.quantize import calibration_hash, quantize_encoder

        self.calibration_hash = calibration_hash(self.calibration_crops, self.loaded.preprocessing)
        return quantize_encoder(self.loaded, self.calibration_crops, self.cache_dir, self.reduce_range)


@dataclass(frozen=True)
class Calibration:
    """Real face crops (HxWx3 uint8 BGR, cut by the serving pipeline) for the int8 engine: `fit` calibrates it,
    `held_back` (never seen by the calibration) is what the parity gate compares on, in windows of `window`."""

    fit: Sequence[np.ndarray]
    held_back: Sequence[np.ndarray]
    window: int


def build_engine(
    loaded: LoadedModel,
    device: str = "auto",
    cpu_engine: str = "auto",
    cache_dir: Path | None = None,
    calibration: Calibration | None = None,
) -> Engine:
    """The backend for `loaded` on `device`; on the CPU, `cpu_engine` by name, or `auto`: the fastest engine that
    passes the parity gate on this machine (a cached micro-benchmark, model/engine_choice.py). A gated engine is
    used only when it passes against fp32 ONNX Runtime on `calibration.held_back`; otherwise fp32 ONNX Runtime,
    with a warning (`gate_result` then says why)."""
    if cpu_engine not in CPU_ENGINES:
        raise EngineError(f"cpu engine must be one of {', '.join(CPU_ENGINES)}, got {cpu_engine!r}")
    chosen_device = resolve_device(device)
    if chosen_device.type == "cuda":
        return TorchEngine(loaded.network, chosen_device)
    cache = cache_dir or default_cache_dir()
    if cpu_engine == "auto":
        from model.engine_choice import choose_cpu_engine

        return choose_cpu_engine(loaded, cache, _needs_calibration(cpu_engine, calibration))
    if cpu_engine in GATED_CPU_ENGINES:
        return gated_engine(cpu_engine, loaded, cache, _needs_calibration(cpu_engine, calibration))
    return cpu_engine_named(cpu_engine, loaded, cache, calibration)


def _needs_calibration(cpu_engine: str, calibration: Calibration | None) -> Calibration:
    if calibration is None:
        raise EngineError(
            f"the {cpu_engine} engine needs calibration face crops for its parity gate; use --cpu-engine onnxruntime"
        )
    return calibration


def cpu_engine_named(name: str, loaded: LoadedModel, cache_dir: Path, calibration: Calibration | None) -> Engine:
    """The CPU engine called `name` (one of CPU_ENGINES but auto), built without its gate. EngineError when its
    runtime is not installed."""
    if name == "onnxruntime":
        return OnnxEngine(loaded, cache_dir)
    if name == "torch":
        return TorchEngine(loaded.network, torch.device("cpu"))
    if name == "onnxruntime-int8":
        return OnnxInt8Engine(loaded, cache_dir, calibration_crops=_needs_calibration(name, calibration).fit)
    if name.startswith("openvino"):
        from model.openvino_engine import openvino_engine, openvino_version

        if openvino_version() is None:
            raise EngineError(f"the {name} engine needs OpenVINO (pip install openvino); use --cpu-engine onnxruntime")
        precision = name.partition("-")[2] or "fp32"
        fit = _needs_calibration(name, calibration).fit if precision == "int8" else ()
        return openvino_engine(loaded, cache_dir, precision, fit)
    raise EngineError(f"cpu engine must be one of {', '.join(CPU_ENGINES)}, got {name!r}")


def gated_engine(name: str, loaded: LoadedModel, cache_dir: Path, calibration: Calibration) -> Engine:
    """Engine `name` if it passes the parity gate against fp32 ONNX Runtime on `calibration.held_back`, else fp32
    ONNX Runtime with a warning; `gate_result` says which and why."""
    from model.parity import check_parity

    reference = OnnxEngine(loaded, cache_dir)
    candidate = cpu_engine_named(name, loaded, cache_dir, calibration)
    result = check_parity(reference, candidate, calibration.held_back, loaded.preprocessing, calibration.window)
    chosen = candidate if result.passed else reference
    chosen.gate_result = result.describe()  # type: ignore[attr-defined]
    if not result.passed:
        log.warning("the %s engine was refused by the parity gate, using fp32: %s", name, result.describe())
    return chosen
