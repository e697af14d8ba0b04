"""Training throughput: `stream.training.prepare` (videos/s and crops/s through the serving crop unit) and
`model.train`'s steps (clips/s) for each architecture, with the backbone trained (the full fine-tune, augmentation
on) and frozen (head and LSTM on cached features), on this machine's CPU or GPU, on test-made videos (nothing
downloaded).

Run: `.venv/bin/python bench/train.py [--videos 8] [--frames 60] [--window 10] [--batch 4] [--steps 3] [--device cpu]`
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from bench.common import describe_machine, print_table
from model.clips import clip_refs, split_by_group
from model.cpu import cpu_description
from model.network import build_network
from model.prepared import read_manifest
from model.trainer import TrainConfig, Trainer, targets_of


def prepare_rate(source: Path, out: Path) -> tuple[float, float, int, int]:
    from stream.config import Settings  # PyAV and MediaPipe: needed only here (--prepared skips this step)
    from stream.training.datasets import find_dataset
    from stream.training.prepare import prepare

    dataset = find_dataset(source)
    began = time.perf_counter()
    manifest = prepare(dataset, out, Settings(), progress=False)
    seconds = time.perf_counter() - began
    crops = sum(t.crops for v in manifest.videos for t in v.tracks)
    return len(manifest.videos) / seconds, crops / seconds, len(manifest.videos), crops


def train_rate(data: Path, arch: str, frozen: bool, args: argparse.Namespace, device: torch.device) -> float:
    """Clips per second over `args.steps` timed training steps (after one untimed, which also fills any cache)."""
    manifest = read_manifest(data)
    config = TrainConfig(
        arch=arch, window=args.window, batch_size=args.batch, lr=1e-5, augment=not frozen, freeze_backbone=frozen
    )
    split = split_by_group(manifest, 0.0, 0)
    refs = clip_refs(manifest, split.train, config.window, config.stride)
    torch.manual_seed(0)
    trainer = Trainer(build_network(arch), manifest, split, refs, [], config, device, progress=False)
    rng = np.random.default_rng(0)

    def step() -> None:
        batch = [refs[i] for i in rng.choice(len(refs), size=config.batch_size, replace=False)]
        trainer.optimizer.zero_grad(set_to_none=True)
        logits = trainer.logits(batch, rng)
        loss = trainer.loss_fn(logits.float(), targets_of(batch).to(device))
        trainer.scaler.scale(loss).backward()
        trainer.scaler.step(trainer.optimizer)
        trainer.scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()

    trainer._set_mode(True)
    if frozen:  # fill the feature cache first: its one-off cost is the prepare-like part, not a training step
        trainer.logits(refs, None)
    step()
    began = time.perf_counter()
    for _ in range(args.steps):
        step()
    return args.steps * config.batch_size / (time.perf_counter() - began)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8, help="REAL + FAKE videos made for the run (even)")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--prepared", type=Path, help="time training on this prepared folder; skip preparing")
    parser.add_argument("--keep", type=Path, help="keep the prepared folder here")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"machine: {cpu_description()}; {describe_machine(device)}")
    with tempfile.TemporaryDirectory() as folder:
        data = args.prepared
        if data is None:
            from tests.train_sets import labelled_set

            source = labelled_set(Path(folder) / "set", clips=args.videos // 2, frames=args.frames)
            data = args.keep or Path(folder) / "prepared"
            videos_s, crops_s, videos, crops = prepare_rate(source, data)
            print(f"\nprepare: {videos} videos of {args.frames} frames (256x192), {crops} crops")
            print_table(["videos/s", "crops/s"], [[videos_s, crops_s]])
        rows = []
        for arch in ("seed", "temporal"):
            for frozen in (False, True):
                rate = train_rate(data, arch, frozen, args, device)
                rows.append([arch, "frozen, cached features" if frozen else "trained, augmented", rate])
        print(f"\ntraining steps: window {args.window}, batch {args.batch}, {args.steps} timed steps, {device}")
        print_table(["arch", "backbone", "clips/s"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
