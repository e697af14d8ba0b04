"""PyTorch eager: the engine on CUDA, and the CPU reference every other engine is checked against."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from model.cpu import cpu_budget
from model.engines.base import Engine, EngineError, score_on
from model.network import FrameOutputs, SeedNet, TemporalNet, WindowMode

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


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


@dataclass
class TorchEngine(Engine):
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
