"""Cost of one window step (a new frame arrives, the window of T frames is re-scored): cached vs recompute.

Cached (ours): encode the one new crop, score the window from the T cached outputs.
Recompute (the original app): run all T crops through the network for every verdict. Measured two ways in
the same run with the same weights: through the same engine as ours (isolates caching), and with the
original's own PyTorch forward (what the original app ran).
Run: `.venv/bin/python bench/window.py [--windows 10,20,40,100] [--repeats 5]`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import describe_machine, median_seconds, print_table
from model.engine import build_engine
from model.network import FrameOutputs
from model.weights import random_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--windows", default="10,20,40,100")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()

    loaded = random_model()
    with tempfile.TemporaryDirectory() as cache_dir:
        engine = build_engine(loaded, args.device, "auto", Path(cache_dir))
        network = loaded.network
        print(f"machine: {describe_machine(engine.device)}; engine {engine.name}; mode mean")
        rows = []
        generator = torch.Generator().manual_seed(0)
        for window in [int(w) for w in args.windows.split(",")]:
            crops = torch.randn(window, 3, 112, 112, generator=generator)
            cached = engine.encode(crops)
            new_crop = crops[-1:]

            def cached_step(cached: FrameOutputs = cached, new_crop: torch.Tensor = new_crop) -> None:
                newest = engine.encode(new_crop)
                ring = FrameOutputs(
                    features=torch.cat([cached.features[1:], newest.features]).unsqueeze(0),
                    logits=torch.cat([cached.logits[1:], newest.logits]).unsqueeze(0),
                )
                engine.score(ring, "mean")

            def recompute_same_engine(crops: torch.Tensor = crops) -> None:
                outputs = engine.encode(crops)
                engine.score(FrameOutputs(outputs.features.unsqueeze(0), outputs.logits.unsqueeze(0)), "mean")

            def recompute_original(crops: torch.Tensor = crops) -> None:
                with torch.inference_mode():
                    torch.softmax(network(crops.to(engine.device).unsqueeze(0), "mean"), dim=1)
                if engine.device.type == "cuda":
                    torch.cuda.synchronize()

            ours = median_seconds(cached_step, args.repeats * 4)
            same = median_seconds(recompute_same_engine, args.repeats)
            original = median_seconds(recompute_original, args.repeats)
            rows.append(
                [
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
