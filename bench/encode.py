"""Crops/s through `encode_frames` per engine and batch size, against the machine's own matmul limits, with each
engine's parity figures against the PyTorch fp32 reference.

On the CPU: torch eager fp32 (the reference) and bf16 (autocast, channels_last), ONNX Runtime fp32 and int8
(static QDQ quantisation of the backbone's convolutions, calibrated on face crops from tests/crop_sets.py), and
OpenVINO fp32 and int8 over the same two graphs. `--busy` keeps one core busy with another program throughout
(run it with and without to see how each engine degrades under contention).
Parity is measured as the gate (model/engines/parity.py) measures it: a checkpoint whose head responds to its input
(tests/crop_sets.responsive_seed_model), held-back crops the calibration never saw, windows of `--window`.
The limits: dense 2048² matmul throughput, fp32 (torch and ONNX Runtime, the better one), int8 (ONNX Runtime
MatMulInteger, u8 x s8 with constant weights) and bf16 (torch), each turned into crops/s with the backbone's
FLOP count. Every rate is the best of `--rounds` rounds, engines interleaved, so other work on the machine
lowers all of them alike instead of whichever ran at the wrong moment; the load average is printed beside.

Run: `.venv/bin/python bench/encode.py [--seconds 2] [--rounds 2] [--batches 1,2,8,32]`. On a CUDA machine it
runs torch fp32 and the autocast (bf16/fp16) path, unchanged.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# As the detector runs (run_stream.py): OpenMP threads sleep when idle instead of spinning on the cores that
# decoding and face detection need. OMP_WAIT_POLICY=ACTIVE in the environment measures the spinning case.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    backbone_flop_per_crop,
    describe_machine,
    matmul_gflops,
    onnxruntime_matmul_gflops,
    print_table,
    rate,
)
from model.cpu import cpu_description
from model.engines.export import export_onnx
from model.engines.onnxruntime_engine import OnnxEngine
from model.engines.onnxruntime_int8 import OnnxInt8Engine
from model.engines.openvino_engine import OpenVinoEngine, openvino_version
from model.engines.parity import FEATURE_COSINE_MIN, P_FAKE_DELTA_MAX, check_parity
from model.engines.torch_engine import TorchEngine
from model.weights import random_model
from tests.crop_sets import calibration_crops, held_back_crops, responsive_seed_model


def onnxruntime_int8_gops(size: int = 2048, seconds: float = 2.0) -> float:
    """Dense int8 matmul GOP/s through ONNX Runtime (MatMulInteger, uint8 activations x int8 constant weights,
    int32 accumulation: the kernels QLinearConv runs on), on all cores."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.integers(-127, 128, (size, size), dtype=np.int8), "b")
    spec_a = helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])
    spec_c = helper.make_tensor_value_info("c", TensorProto.INT32, [size, size])
    node = helper.make_node("MatMulInteger", ["a", "b"], ["c"])
    graph = helper.make_graph([node], "matmul_int8", [spec_a], [spec_c], initializer=[weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    a = rng.integers(0, 256, (size, size), dtype=np.uint8)
    return rate(lambda: session.run(None, {"a": a}), 1, seconds) * 2 * size**3 / 1e9


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def run_cuda(device: torch.device, batches: list[int], seconds: float, window: int) -> None:
    reference_network = random_model().network
    flop_per_crop = backbone_flop_per_crop(reference_network)
    limits = {"fp32": matmul_gflops(device), "bf16": matmul_gflops(device, torch.bfloat16)}
    limits["fp16"] = matmul_gflops(device, torch.float16)
    limit_crops = {kind: value * 1e9 / flop_per_crop for kind, value in limits.items()}
    print(f"machine: {describe_machine(device)}")
    print(
        "matmul 2048²: "
        + ", ".join(f"{kind} {value:.0f} GFLOP/s" for kind, value in limits.items())
        + f"; backbone {flop_per_crop / 1e9:.3f} GFLOP/crop -> limits "
        + ", ".join(f"{kind} {value:.0f}" for kind, value in limit_crops.items())
        + " crops/s"
    )
    loaded = responsive_seed_model()  # parity needs a head that responds
    engines = {
        precision: TorchEngine(copy.deepcopy(loaded.network), device, precision=precision)
        for precision in ("fp32", "bf16", "fp16")
    }
    held_back = held_back_crops(24)
    parity = {
        precision: check_parity(engines["fp32"], engine, held_back, loaded.preprocessing, window)
        for precision, engine in engines.items()
    }
    generator = torch.Generator().manual_seed(0)
    rows = []
    for batch_size in batches:
        batch = torch.randn(batch_size, 3, 112, 112, generator=generator)
        rates = {p: rate(lambda e=e, b=batch: e.encode(b), batch_size, seconds) for p, e in engines.items()}
        for precision, crops_per_s in rates.items():
            result = parity[precision]
            rows.append(
                [
                    engines[precision].name,
                    batch_size,
                    crops_per_s,
                    f"{crops_per_s / rates['fp32']:.2f}x",
                    f"{crops_per_s / limit_crops[precision]:.2f} {precision}",
                    f"{result.feature_cosine_min:.5f}",
                    f"{result.p_fake_delta_max:.4f}",
                    "pass" if result.passed else "FAIL",
                ]
            )
    print_table(["engine", "batch", "crops/s", "vs fp32", "of limit", "cos min", "max |dp|", "gate"], rows)
    print(f"parity vs {engines['fp32'].name} on {len(held_back)} held-back crops, windows of {window}")


def busy_core() -> subprocess.Popen:
    """Another program keeping one core busy (a user's machine runs other things): numpy in a loop."""
    code = "import numpy as np\na = np.random.rand(512, 512)\nwhile True: a @ a"
    return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})


def run_cpu(batches: list[int], seconds: float, rounds: int, window: int, busy: bool) -> None:
    print(f"machine: {cpu_description()}; {describe_machine(torch.device('cpu'))}")
    print(f"openvino {openvino_version() or 'not installed'}")
    burner = busy_core() if busy else None
    try:
        measure_cpu(batches, seconds, rounds, window)
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    print("another program kept one core busy the whole time" if busy else "no other program was started")


def measure_cpu(batches: list[int], seconds: float, rounds: int, window: int) -> None:
    print(f"load average at start: {load_average()}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    flop_per_crop = backbone_flop_per_crop(random_model().network)
    fp32 = max(matmul_gflops(torch.device("cpu")), onnxruntime_matmul_gflops())
    int8 = onnxruntime_int8_gops()
    bf16 = matmul_gflops(torch.device("cpu"), torch.bfloat16)
    limits = {"fp32": fp32, "int8": int8, "bf16": bf16}
    limit_crops = {kind: value * 1e9 / flop_per_crop for kind, value in limits.items()}
    print(
        f"matmul 2048² on all cores: fp32 {fp32:.0f} GFLOP/s (better of torch/onnxruntime), int8 {int8:.0f} GOP/s "
        f"(onnxruntime), bf16 {bf16:.0f} GFLOP/s (torch); backbone {flop_per_crop / 1e9:.3f} GFLOP/crop -> limits "
        + ", ".join(f"{kind} {value:.0f}" for kind, value in limit_crops.items())
        + " crops/s"
    )

    loaded = responsive_seed_model()  # the speed does not depend on the weights; parity needs a head that responds
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = Path(cache_dir)
        # Each torch engine gets its own network: the bf16 engine turns its backbone to channels_last in place.
        reference = TorchEngine(loaded.network, torch.device("cpu"), precision="fp32")
        engines = {
            reference.name: (reference, "fp32"),
            "torch-cpu-bf16": (TorchEngine(copy.deepcopy(loaded.network), torch.device("cpu"), "bf16"), "bf16"),
            "onnxruntime-cpu": (OnnxEngine(loaded, cache), "fp32"),
            "onnxruntime-int8": (OnnxInt8Engine(loaded, cache, calibration_crops=calibration_crops()), "int8"),
        }
        if openvino_version():
            int8_graph = engines["onnxruntime-int8"][0].graph_path
            engines["openvino"] = (OpenVinoEngine(loaded, export_onnx(loaded, cache, 112), "fp32"), "fp32")
            engines["openvino-int8"] = (OpenVinoEngine(loaded, int8_graph, "int8"), "int8")
        held_back = held_back_crops(24)
        parity = {
            name: check_parity(reference, engine, held_back, loaded.preprocessing, window)
            for name, (engine, _) in engines.items()
        }
        generator = torch.Generator().manual_seed(0)
        best: dict[tuple[str, int], float] = {}
        for _ in range(rounds):
            for batch_size in batches:
                batch = torch.randn(batch_size, 3, 112, 112, generator=generator)
                for name, (engine, _) in engines.items():
                    crops_per_s = rate(lambda e=engine, b=batch: e.encode(b), batch_size, seconds)
                    best[name, batch_size] = max(best.get((name, batch_size), 0.0), crops_per_s)
    print(f"load average at end: {load_average()}")
    rows = []
    for batch_size in batches:
        baseline = best["onnxruntime-cpu", batch_size]
        for name, (_, kind) in engines.items():
            crops_per_s, result = best[name, batch_size], parity[name]
            rows.append(
                [
                    name,
                    batch_size,
                    crops_per_s,
                    f"{crops_per_s / baseline:.2f}x",
                    f"{crops_per_s / limit_crops[kind]:.2f} {kind}",
                    f"{result.feature_cosine_min:.5f}",
                    f"{result.p_fake_delta_max:.4f}",
                    "pass" if result.passed else "FAIL",
                ]
            )
    print_table(
        ["engine", "batch", "crops/s", "vs ort fp32", "of limit", "cos min", "max |dp|", "gate"],
        rows,
    )
    example = parity["onnxruntime-int8"]
    print(
        f"parity vs {reference.name} on {example.crops} held-back crops, {example.windows} windows of {window} "
        f"(cosine >= {FEATURE_COSINE_MIN}, |dp_fake| <= {P_FAKE_DELTA_MAX}; reference window scores span "
        f"{example.p_fake_spread:.3f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per cell and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per cell; the best is kept")
    parser.add_argument("--batches", default="1,2,8,32")
    parser.add_argument("--window", type=int, default=8, help="window length for the parity figures")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--busy", action="store_true", help="CPU: keep one core busy with another program throughout")
    parser.add_argument("--cudnn-benchmark", action="store_true", help="CUDA: let cuDNN time its kernels per shape")
    args = parser.parse_args()
    device = torch.device(
        "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
    )
    batches = [int(b) for b in args.batches.split(",")]
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if device.type == "cuda":
        run_cuda(device, batches, args.seconds, args.window)
    else:
        run_cpu(batches, args.seconds, args.rounds, args.window, args.busy)


if __name__ == "__main__":
    main()
