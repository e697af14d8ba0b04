"""`python -m model.train DATA --arch seed|temporal --window 20 --epochs N`: train on data made by
`stream.training.prepare`, split by group (no identity on both sides), and write our checkpoint format with the training
metrics inside. Resumable: run the same command again after an interruption (Ctrl-C saves)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from model.cli import EXIT_INTERRUPTED, OneLineParser, positive_float, positive_int
from model.clips import ClipRef, Split, clip_refs, longest_track, split_by_group
from model.labels import ARCHITECTURE_NAMES
from model.network import DeepfakeNet, build_network
from model.prepared import SERVING_CROP_GEOMETRY, Manifest, PreparedDataError, read_manifest
from model.progress import duration
from model.trainer import EpochRecord, TrainConfig, Trainer, TrainError
from model.weights import CheckpointError, load_checkpoint, save_checkpoint

MIN_TRAIN_WINDOW = 2
FIRST_RECIPE_HINT = (
    "note: a random backbone trained whole learns slowly (about 25 min for 20 epochs of 10 videos on 2 CPU cores, "
    "AUC still swinging); for a first model: --freeze-backbone --no-augment --lr 1e-3 --window 10 (docs/training.md)"
)


def parse_args(argv: Sequence[str]):
    defaults = TrainConfig()
    parser = OneLineParser(prog="python -m model.train", description="Train a deepfake checkpoint on prepared data.")
    parser.add_argument("data", type=Path, help="a folder made by python -m stream.training.prepare")
    parser.add_argument("--arch", choices=ARCHITECTURE_NAMES, default=defaults.arch)
    parser.add_argument("--window", type=positive_int, default=defaults.window, help="frames per training clip")
    parser.add_argument("--epochs", type=positive_int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    parser.add_argument("--lr", type=positive_float, default=defaults.lr, help="Adam learning rate (original: 1e-5)")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--init", type=Path, help="start from this checkpoint (an original one or ours)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--out", type=Path, help="the checkpoint to write (default runs/train/ARCH-wWINDOW.pt)")
    parser.add_argument("--no-augment", action="store_true", help="no compression/blur/colour/flip augmentation")
    parser.add_argument("--self-blend", action="store_true", help="add a self-blended FAKE of every REAL clip")
    parser.add_argument("--freeze-backbone", action="store_true", help="train the LSTM and head only")
    parser.add_argument("--val-fraction", type=float, default=defaults.val_fraction, help="share of groups")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--crop-geometry",
        type=int,
        default=SERVING_CROP_GEOMETRY,
        help=f"the crop geometry the data must have (serving's default: {SERVING_CROP_GEOMETRY})",
    )
    parser.add_argument("--restart", action="store_true", help="ignore a saved resume state and start over")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.window < MIN_TRAIN_WINDOW:
        parser.error(f"--window must be at least {MIN_TRAIN_WINDOW} frames, got {args.window}")
    if not 0.0 <= args.val_fraction < 1.0:
        parser.error(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    return args


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TrainError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainError(f"--device {name}: no CUDA device is available here (use cpu)")
    return device


def check_data(manifest: Manifest, split: Split, config: TrainConfig, geometry: int) -> None:
    if manifest.crop_geometry != geometry:
        raise TrainError(
            f"{manifest.root} was cut with crop geometry {manifest.crop_geometry}, but serving uses {geometry}: "
            "prepare it again with the detector's settings (or pass --crop-geometry "
            f"{manifest.crop_geometry} to train for that geometry)"
        )
    if not any(v.tracks for v in manifest.videos):
        raise TrainError(f"{manifest.root} holds no video with a face: nothing to train on")
    longest = longest_track(manifest, split.train)
    if longest < config.window:
        raise TrainError(
            f"--window {config.window} is longer than every face track in the training videos (longest: {longest} "
            f"crops): use --window {longest} or less, or prepare with a larger --max-frames"
        )
    labels = {manifest.videos[i].label for i in split.train if manifest.videos[i].tracks}
    if "FAKE" not in labels and not config.self_blend:
        raise TrainError("the training videos are all REAL: add FAKE videos or pass --self-blend")
    if "REAL" not in labels:
        raise TrainError("the training videos are all FAKE: add REAL videos")


def with_self_blends(refs: list[ClipRef]) -> list[ClipRef]:
    return refs + [replace(r, synthetic=True) for r in refs if not r.fake]


def initial_network(arch: str, init: Path | None) -> tuple[DeepfakeNet, str]:
    if init is None:
        return build_network(arch), "random init (no --init)"
    loaded = load_checkpoint(init)
    if loaded.arch == arch:
        return loaded.network, f"from {init}"
    network = build_network(arch)
    network.model.load_state_dict(loaded.network.model.state_dict())
    return network, f"backbone from {init} ({loaded.arch}); {arch} head and LSTM random"


def fingerprint(args, config: TrainConfig, manifest: Manifest) -> dict[str, Any]:
    return {
        "config": {k: v for k, v in asdict(config).items() if k != "epochs"},  # more epochs may follow
        "data": str(manifest.root.resolve()),
        "videos": len(manifest.videos),
        "init": str(args.init) if args.init else None,
    }


def training_metrics(trainer: Trainer, manifest: Manifest, split: Split, started: str, finished: bool) -> dict:
    history = trainer.state.history
    return {
        "training": {
            "finished": finished,
            "epochs": trainer.state.epochs_done,
            "history": [asdict(r) for r in history],
            "val_auc": history[-1].val_auc if history else None,
            "train_auc": trainer.auc_of(trainer.train_refs) if finished else None,
            "config": asdict(trainer.config),
            "data": manifest.source,
            "layout": manifest.layout,
            "crop_geometry": manifest.crop_geometry,
            "videos": {"train": len(split.train), "val": len(split.val), "test": len(split.test)},
            "clips": {"train": len(trainer.train_refs), "val": len(trainer.val_refs)},
            "groups": {"train": sorted(split.groups(manifest, "train")), "val": sorted(split.groups(manifest, "val"))},
            "device": str(trainer.device),
            "init": started,
        }
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    config = TrainConfig(
        arch=args.arch,
        window=args.window,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        augment=not args.no_augment,
        self_blend=args.self_blend,
        freeze_backbone=args.freeze_backbone,
        val_fraction=args.val_fraction,
        seed=args.seed,
    )
    out = args.out or Path("runs/train") / f"{config.arch}-w{config.window}.pt"
    resume_path = out.with_name(out.name + ".resume")
    try:
        manifest = read_manifest(args.data)
        split = split_by_group(manifest, config.val_fraction, config.seed)
        check_data(manifest, split, config, args.crop_geometry)
        device = resolve_device(args.device)
        torch.manual_seed(config.seed)
        network, started = initial_network(config.arch, args.init)
        train_refs = clip_refs(manifest, split.train, config.window, config.stride)
        val_refs = clip_refs(manifest, split.val, config.window, config.stride)
        if config.self_blend:
            train_refs, val_refs = with_self_blends(train_refs), with_self_blends(val_refs)
        trainer = Trainer(network, manifest, split, train_refs, val_refs, config, device, not args.no_progress)
        print_plan(manifest, split, trainer, started, out)
        if args.init is None and not config.freeze_backbone:
            print(FIRST_RECIPE_HINT, file=sys.stderr)
        marks = fingerprint(args, config, manifest)
        if resume_path.is_file() and not args.restart:
            trainer.load_state(resume_path, marks)
            print(f"resuming after epoch {trainer.state.epochs_done} from {resume_path}", file=sys.stderr)
        out.parent.mkdir(parents=True, exist_ok=True)
    except (PreparedDataError, TrainError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    began = time.monotonic()
    epoch_began = [began]

    def on_epoch(record: EpochRecord) -> None:
        trainer.save_state(resume_path, marks)
        now = time.monotonic()
        took, epoch_began[0] = now - epoch_began[0], now
        left = config.epochs - record.epoch
        # The last epoch's time, not the mean: the first one also computes cached features and is slower.
        eta = f", ETA {duration(took * left)} for {left} more" if left else ""
        print(
            f"epoch {record.epoch}/{config.epochs}: loss {record.loss:.4f}, {validation_text(record.val_auc, trainer)}"
            f" ({duration(took)}{eta})",
            file=sys.stderr,
        )

    try:
        trainer.run(on_epoch)
    except KeyboardInterrupt:
        trainer.save_state(resume_path, marks)
        save(trainer, out, training_metrics(trainer, manifest, split, started, finished=False))
        print(
            f"\ninterrupted after {trainer.state.epochs_done} of {config.epochs} epochs: saved {out} and {resume_path};"
            " run the same command again to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    metrics = training_metrics(trainer, manifest, split, started, finished=True)
    save(trainer, out, metrics)
    resume_path.unlink(missing_ok=True)
    result = metrics["training"]
    train_auc = "-" if result["train_auc"] is None else f"{result['train_auc']:.3f}"
    print(
        f"trained {config.arch} (window {config.window}) for {config.epochs} epochs in "
        f"{time.monotonic() - began:.1f} s:"
        f" loss {trainer.state.history[0].loss:.4f} -> {trainer.state.history[-1].loss:.4f}, train AUC "
        f"{train_auc}, {validation_text(result['val_auc'], trainer)} -> {out} (uncalibrated until: python -m "
        f"model.evaluate {out} HELD-OUT-DATA --calibrate OUT)"
    )
    return 0


def validation_text(val_auc: float | None, trainer: Trainer) -> str:
    """`val AUC 0.875 on 4 videos (12 clips)`: few videos make a noisy AUC, so the count is always beside it."""
    if val_auc is None:
        return "val AUC - (no validation clips of both labels)"
    return f"val AUC {val_auc:.3f} on {trainer.val_videos} videos ({len(trainer.val_refs)} clips)"


def save(trainer: Trainer, out: Path, metrics: dict) -> None:
    trained_on = f"{metrics['training']['data']} ({metrics['training']['layout']})"
    save_checkpoint(trainer.network.cpu(), out, window=trainer.config.window, trained_on=trained_on, metrics=metrics)
    trainer.network.to(trainer.device)


def print_plan(manifest: Manifest, split: Split, trainer: Trainer, started: str, out: Path) -> None:
    print(
        f"training {trainer.config.arch} on {manifest.root}: {len(split.train)} videos / {len(trainer.train_refs)} "
        f"clips to train, {len(split.val)} / {len(trainer.val_refs)} to validate (by group), {len(split.test)} test "
        f"videos left out; {started}; device {trainer.device}; -> {out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    sys.exit(main())
