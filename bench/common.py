"""Small helpers the benchmarks share: timing loops, the machine's matmul roofline, and table printing."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence

import torch

BACKBONE_FLOP_PER_CROP_NOMINAL = 2.215e9  # at 112x112, by torch.utils.flop_counter (bench/encode.py re-counts it)


def rate(step: Callable[[], object], items_per_step: int, seconds: float, warmup: int = 2) -> float:
    """Items per second over repeated `step()` calls for about `seconds`, after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    count, start = 0, time.perf_counter()
    while True:
        step()
        count += items_per_step
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def median_seconds(step: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """The median wall time of one `step()` call."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def matmul_gflops(
    device: torch.device, dtype: torch.dtype = torch.float32, size: int = 2048, seconds: float = 2.0
) -> float:
    """The machine's dense matmul throughput in GFLOP/s: the roofline the backbone is judged against."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)

    def step() -> None:
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return rate(step, 1, seconds) * 2 * size**3 / 1e9


def onnxruntime_matmul_gflops(size: int = 2048, seconds: float = 2.0) -> float:
    """Dense fp32 matmul GFLOP/s through ONNX Runtime's own kernels (MLAS), on all cores.

    Measured beside torch's because torch's CPU BLAS reaches about half the peak on this AMD machine: the
    better of the two is the honest roofline.
    """
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    spec = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [size, size]) for name in ("a", "b", "c")]
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul", spec[:2], spec[2:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    return rate(lambda: session.run(None, {"a": a, "b": a}), 1, seconds) * 2 * size**3 / 1e9


def backbone_flop_per_crop(network: torch.nn.Module, input_size: int = 112) -> float:
    """FLOP of one crop through the backbone, counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        network.pooled_features(torch.zeros(1, 3, input_size, input_size))
    return float(counter.get_total_flops())


def describe_machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    threads = torch.get_num_threads()
    return f"{platform.processor() or platform.machine()}, {threads} torch threads, torch {torch.__version__}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain fixed-width table on stdout."""
    cells = [[str(h) for h in headers]] + [[f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for index, row in enumerate(cells):
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))
