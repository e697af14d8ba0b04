"""Crops/s through `encode_frames` per engine and batch size, against the machine's own matmul roofline.

Run: `.venv/bin/python bench/encode.py [--seconds 3] [--batches 1,2,8,32]`. On a CUDA machine it also runs
torch fp32 and the autocast (bf16/fp16) path.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

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
from model.engine import OnnxEngine, TorchEngine
from model.weights import random_model


def engines_for(device: torch.device, cache_dir: Path) -> list:
    loaded = random_model()
    if device.type == "cuda":
        return [
            TorchEngine(random_model().network, device, precision="fp32"),
            TorchEngine(loaded.network, device),
        ]
    return [TorchEngine(random_model().network, device), OnnxEngine(loaded, cache_dir)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per cell")
    parser.add_argument("--batches", default="1,2,8,32")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    device = torch.device(
        "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
    )
    batches = [int(b) for b in args.batches.split(",")]

    reference_network = random_model().network
    flop_per_crop = backbone_flop_per_crop(reference_network)
    torch_gflops = matmul_gflops(device)
    ort_gflops = onnxruntime_matmul_gflops() if device.type == "cpu" else 0.0
    gflops = max(torch_gflops, ort_gflops)
    roofline = gflops * 1e9 / flop_per_crop
    print(f"machine: {describe_machine(device)}")
    print(
        f"fp32 matmul 2048²: torch {torch_gflops:.0f} GFLOP/s, onnxruntime {ort_gflops:.0f} GFLOP/s; "
        f"backbone {flop_per_crop / 1e9:.3f} GFLOP/crop -> limit {roofline:.0f} crops/s at the better one"
    )

    rows = []
    with tempfile.TemporaryDirectory() as cache_dir:
        engines = engines_for(device, Path(cache_dir))
        reference = engines[0]
        generator = torch.Generator().manual_seed(0)
        for batch_size in batches:
            batch = torch.randn(batch_size, 3, 112, 112, generator=generator)
            expected = reference.encode(batch).logits
            for engine in engines:
                got = engine.encode(batch).logits
                difference = float((got - expected).abs().max())
                crops_per_s = rate(lambda e=engine, b=batch: e.encode(b), batch_size, args.seconds)
                rows.append([engine.name, batch_size, crops_per_s, crops_per_s / roofline, f"{difference:.1e}"])
    print_table(["engine", "batch", "crops/s", "of limit", "max |diff| vs " + engines[0].name], rows)


if __name__ == "__main__":
    main()
