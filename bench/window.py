"""Cost of one window step (a new frame arrives, the window of T frames is re-scored): cached vs recompute.

Cached (ours): encode the one new crop, score the window from the T cached outputs.
Recompute (the original app): run all T crops through the network for every verdict. Measured two ways in
the same run with the same weights: through the same engine as ours (isolates caching), and with the
original's own PyTorch forward (what the original app ran).
On the CPU each engine of `--cpu-engines` gets its rows (the batch-1 efficiency study: a window step encodes one
crop, so the ratio against the same engine recomputing T crops is T only when batch 1 costs no more per crop than
batch T; the target is 0.9·T).
Run: `.venv/bin/python bench/window.py [--windows 10,20,40,100] [--repeats 5] [--cpu-engines auto,onnxruntime]`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import describe_machine, median_seconds, print_table
from model.cpu import cpu_description
from model.engines import Engine, build_engine
from model.network import FrameOutputs
from model.weights import random_model
from stream.config import Settings, with_overrides
from stream.detector import cpu_calibration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", default="10,20,40,100")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--cpu-engines", default="auto,onnxruntime", help="CPU engines, each with its own rows")
    args = parser.parse_args()

    loaded = random_model()
    network = loaded.network
    rows = []
    for name in args.cpu_engines.split(","):
        settings = with_overrides(Settings(), {"model.cpu_engine": name}, "bench")
        engine = build_engine(loaded, args.device, name, None, cpu_calibration(settings))
        print(f"machine: {describe_machine(engine.device)}; engine {engine.name}; mode mean")
        if engine.device.type == "cpu":
            print(f"cpu: {cpu_description()}")
        generator = torch.Generator().manual_seed(0)
        for window in [int(w) for w in args.windows.split(",")]:
            crops = torch.randn(window, 3, 112, 112, generator=generator)
            cached = engine.encode(crops)
            new_crop = crops[-1:]

            def cached_step(
                cached: FrameOutputs = cached, new_crop: torch.Tensor = new_crop, engine: Engine = engine
            ) -> None:
                newest = engine.encode(new_crop)
                ring = FrameOutputs(
                    features=torch.cat([cached.features[1:], newest.features]).unsqueeze(0),
                    logits=torch.cat([cached.logits[1:], newest.logits]).unsqueeze(0),
                )
                engine.score(ring, "mean")

            def recompute_same_engine(crops: torch.Tensor = crops, engine: Engine = engine) -> None:
                outputs = engine.encode(crops)
                engine.score(FrameOutputs(outputs.features.unsqueeze(0), outputs.logits.unsqueeze(0)), "mean")

            def recompute_original(crops: torch.Tensor = crops, engine: Engine = engine) -> None:
                with torch.inference_mode():
                    torch.softmax(network(crops.to(engine.device).unsqueeze(0), "mean"), dim=1)
                if engine.device.type == "cuda":
                    torch.cuda.synchronize()

            ours = median_seconds(cached_step, args.repeats * 4)
            same = median_seconds(recompute_same_engine, args.repeats)
            original = median_seconds(recompute_original, args.repeats)
            rows.append(
                [
                    engine.name,
                    window,
                    f"{ours * 1e3:.1f}",
                    f"{same * 1e3:.1f}",
                    f"{original * 1e3:.1f}",
                    f"{same / ours:.1f}",
                    f"{original / ours:.1f}",
                    f"{0.9 * window:.0f}",
                ]
            )
    print_table(
        [
            "engine",
            "T",
            "cached ms",
            "recompute ms (same engine)",
            "recompute ms (original torch)",
            "ratio same engine",
            "ratio vs original",
            "target 0.9·T",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
