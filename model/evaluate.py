"""`python -m model.evaluate CHECKPOINT DATA`: score prepared data as the live pipeline scores faces (sliding
windows, stride 1) and report video- and frame-level AUC, EER, accuracy at the checkpoint's threshold and the
threshold for a target false-alarm rate, with ROC and reliability plots, in a JSON report. Only videos outside the
groups the checkpoint trained on are scored; AUCs come with a bootstrap interval. `--calibrate OUT` writes that
threshold, the metrics and the score spread into a copy of the checkpoint, which the live pipeline then calls
calibrated. Works on the original project's checkpoints unchanged."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.transforms.functional import resize

from model.cli import OneLineParser, positive_int, unit_interval
from model.clips import CropCache, longest_track
from model.held_out import EvaluationError, calibration_size_check, held_out, videos_per_label
from model.labels import MIN_WINDOW
from model.network import DeepfakeNet, SeedNet, fake_probability
from model.plots import plot_reliability, plot_roc
from model.prepared import SERVING_CROP_GEOMETRY, TEST_SPLIT, Manifest, PreparedDataError, read_manifest
from model.preprocess import Preprocessing, normalise
from model.progress import Progress
from model.scoring import MetricError, accuracy, auc, bootstrap_auc, eer, reliability, roc, threshold_for_fpr
from model.spread import (
    SERVING_HYSTERESIS,
    band_share,
    score_percentiles,
    served_hysteresis,
    suggested_hysteresis,
    unsure_warning,
)
from model.train import resolve_device
from model.trainer import TrainError
from model.weights import CheckpointError, LoadedModel, load_checkpoint, save_checkpoint

SCHEMA = "deepfake-stream/evaluation/1"
DEFAULT_THRESHOLD = 0.5
BOOTSTRAP_ROUNDS, CONFIDENCE = 1000, 0.95


@dataclass(frozen=True)
class TrackScores:
    video: int
    track_id: int
    p_fake: np.ndarray  # one per window (stride 1), attributed to the window's last frame


def encode_track(network: DeepfakeNet, crops: np.ndarray, spec: Preprocessing, device: torch.device, batch: int = 32):
    """[N, S, S, 3] uint8 BGR -> per-crop cached outputs, as the live encoder makes them."""
    features, logits = [], []
    with torch.inference_mode():
        for at in range(0, len(crops), batch):
            chunk = torch.from_numpy(np.ascontiguousarray(crops[at : at + batch])).to(device).permute(0, 3, 1, 2)
            if chunk.shape[-1] != spec.input_size:
                chunk = resize(chunk, [spec.input_size, spec.input_size], antialias=True)
            outputs = network.encode_frames(normalise(chunk, spec))
            features.append(outputs.features.float())
            if outputs.logits is not None:
                logits.append(outputs.logits.float())
    return torch.cat(features), (torch.cat(logits) if logits else None)


def window_scores(network: DeepfakeNet, features, logits, window: int, mode: str, chunk: int = 64) -> np.ndarray:
    """p_fake of every window of `window` consecutive crops (stride 1), scored as the live pipeline scores them."""
    count = features.shape[0] - window + 1
    if count < 1:
        return np.zeros(0)
    with torch.inference_mode():
        if isinstance(network, SeedNet):
            windows = logits.unfold(0, window, 1).permute(0, 2, 1)  # [count, window, 2]
            summary = windows.mean(dim=1) if mode == "mean" else windows[:, -1]
            return fake_probability(summary).cpu().numpy()
        scores = []
        for at in range(0, count, chunk):
            block = features[at : at + chunk + window - 1].unfold(0, window, 1).permute(0, 2, 1)
            scores.append(fake_probability(network.window_logits(block, mode)).cpu().numpy())
        return np.concatenate(scores)


def chosen_videos(manifest: Manifest, split: str) -> list[int]:
    if split == "all":
        return list(range(len(manifest.videos)))
    tests = [i for i, v in enumerate(manifest.videos) if v.split == TEST_SPLIT]
    if split == "test" and not tests:
        raise EvaluationError(f"{manifest.root} has no official test videos: use --split all")
    return tests if tests else list(range(len(manifest.videos)))


def level_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float, videos: np.ndarray | None = None
) -> dict[str, Any]:
    """`videos`: each sample's video, when samples are windows (the interval then resamples whole videos)."""
    try:
        interval = bootstrap_auc(labels, scores, videos, BOOTSTRAP_ROUNDS, CONFIDENCE)
        return {
            "samples": int(labels.size),
            "real": int((labels == 0).sum()),
            "fake": int((labels == 1).sum()),
            "videos": int(labels.size if videos is None else np.unique(videos).size),
            "auc": auc(labels, scores),
            "auc_ci": [interval.low, interval.high],
            "eer": eer(labels, scores),
            "accuracy_at_threshold": accuracy(labels, scores, threshold),
        }
    except MetricError as error:
        raise EvaluationError(f"cannot evaluate: {error} (the data needs scored faces of both labels)") from None


def evaluate(
    loaded: LoadedModel,
    manifest: Manifest,
    videos: Sequence[int],
    window: int,
    mode: str,
    target_fpr: float,
    device: torch.device,
    progress: bool = True,
    hysteresis: float = SERVING_HYSTERESIS,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The report and, for the plots, the curves: (report, {"roc": ..., "reliability": ...})."""
    network = loaded.network.to(device).eval()
    crops = CropCache(manifest)
    tracks: list[TrackScores] = []
    not_scored = []
    bar = Progress("evaluate", len(videos), unit="videos") if progress else None
    for done, index in enumerate(videos, 1):
        video = manifest.videos[index]
        scored = False
        for track in video.tracks:
            if track.crops < window:
                continue
            features, logits = encode_track(network, crops.track(index, track.track_id), loaded.preprocessing, device)
            tracks.append(TrackScores(index, track.track_id, window_scores(network, features, logits, window, mode)))
            scored = True
        if not scored:
            not_scored.append(video.file)
        if bar:
            bar.update(done, f"{len(tracks)} faces")
    if bar:
        bar.close()
    if not tracks:
        raise EvaluationError(
            f"no face track in the chosen videos has {window} crops (longest: {longest_track(manifest, videos)}): "
            "use a shorter --window or prepare with a larger --max-frames"
        )
    frame_labels = np.concatenate([np.full(t.p_fake.size, manifest.videos[t.video].is_fake, np.int64) for t in tracks])
    frame_scores = np.concatenate([t.p_fake for t in tracks])
    frame_videos = np.concatenate([np.full(t.p_fake.size, t.video, np.int64) for t in tracks])
    per_video: dict[int, float] = {}
    for t in tracks:  # a video is as fake as its most suspicious face (mean window score per face)
        per_video[t.video] = max(per_video.get(t.video, 0.0), float(t.p_fake.mean()))
    video_labels = np.array([manifest.videos[i].is_fake for i in per_video], np.int64)
    video_scores = np.array(list(per_video.values()))
    threshold = loaded.threshold if loaded.threshold is not None else DEFAULT_THRESHOLD
    try:
        point = threshold_for_fpr(frame_labels, frame_scores, target_fpr)
    except MetricError as error:
        raise EvaluationError(f"cannot evaluate: {error} (the data needs scored faces of both labels)") from None
    bins = reliability(frame_labels, frame_scores)
    spread = score_percentiles(frame_scores)
    report = {
        "schema": SCHEMA,
        "checkpoint": str(loaded.path) if loaded.path else loaded.name,
        "arch": loaded.arch,
        "calibrated": loaded.calibrated,
        "data": str(manifest.root),
        "layout": manifest.layout,
        "crop_geometry": manifest.crop_geometry,
        "window": window,
        "window_mode": mode,
        "checkpoint_threshold": threshold,
        "checkpoint_threshold_from": "checkpoint" if loaded.threshold is not None else "default",
        "video": level_metrics(video_labels, video_scores, threshold),
        "frame": {**level_metrics(frame_labels, frame_scores, threshold, frame_videos), "ece": bins.ece},
        "confidence": {
            "level": CONFIDENCE,
            "rounds": BOOTSTRAP_ROUNDS,
            "method": "percentile bootstrap, videos resampled within each label (seeded)",
        },
        "target_fpr": target_fpr,
        "threshold_for_target": {"threshold": point.threshold, "fpr": point.fpr, "tpr": point.tpr, "level": "frame"},
        "score_spread": {"percentiles": spread, "min": spread[0], "median": spread[50], "max": spread[-1]},
        "verdict_band": verdict_band(spread, point.threshold, hysteresis),
        "videos_not_scored": not_scored,
    }
    curves = {
        "roc": {
            "video": (roc(video_labels, video_scores), report["video"]["auc"]),
            "frame": (roc(frame_labels, frame_scores), report["frame"]["auc"]),
        },
        "marked": (point.fpr, point.tpr),
        "reliability": bins,
    }
    return report, curves


def verdict_band(spread: list[float], threshold: float, hysteresis: float) -> dict[str, Any]:
    """Where the detector's band around the chosen threshold sits in the scores (most inside: verdicts stay UNSURE)."""
    served = served_hysteresis(threshold, hysteresis)
    return {
        "threshold": threshold,
        "hysteresis": served,
        "share_inside": band_share(spread, threshold, served),
        "suggested_hysteresis": suggested_hysteresis(spread, threshold),
        "warning": unsure_warning(spread, threshold, served),
    }


def calibrated_copy(loaded: LoadedModel, report: dict[str, Any], out: Path, window: int) -> Path:
    """A copy of the checkpoint in our format with the chosen threshold and this evaluation inside."""
    evaluation = {
        "threshold": report["threshold_for_target"]["threshold"],
        "target_fpr": report["target_fpr"],
        "video_auc": report["video"]["auc"],
        "frame_auc": report["frame"]["auc"],
        "video_eer": report["video"]["eer"],
        "frame_eer": report["frame"]["eer"],
        "frame_tpr_at_threshold": report["threshold_for_target"]["tpr"],
        "data": report["data"],
        "window": window,
        "crop_geometry": report["crop_geometry"],
        "score_percentiles": report["score_spread"]["percentiles"],
        "held_out": report["held_out"],
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    metrics = {**loaded.metrics, "evaluation": evaluation}
    if loaded.reported_accuracy is not None:
        metrics.setdefault("reported_accuracy", loaded.reported_accuracy)
    trained_on = str(loaded.metrics.get("training", {}).get("data", f"the original project ({loaded.name})"))
    return save_checkpoint(
        loaded.network.cpu(),
        out,
        window=loaded.trained_window or window,
        trained_on=trained_on,
        metrics=metrics,
        preprocessing=loaded.preprocessing,
    )


def parse_args(argv: Sequence[str]):
    parser = OneLineParser(prog="python -m model.evaluate", description="Evaluate a checkpoint on prepared data.")
    parser.add_argument("checkpoint", type=Path, help="an original checkpoint or one of ours")
    parser.add_argument("data", type=Path, help="a folder made by python -m stream.training.prepare")
    parser.add_argument("--window", type=positive_int, help="frames per window (default: the checkpoint's, else 20)")
    parser.add_argument("--window-mode", choices=["mean", "last"], default="mean")
    parser.add_argument("--target-fpr", type=unit_interval, default=0.01, help="false-alarm rate to pick a threshold")
    parser.add_argument("--split", choices=["auto", "test", "all"], default="auto", help="auto: test if there is one")
    parser.add_argument("--out", type=Path, help="folder for report.json and the plots (default runs/eval/NAME)")
    parser.add_argument("--calibrate", type=Path, metavar="OUT", help="write a calibrated copy of the checkpoint")
    parser.add_argument(
        "--include-training-groups",
        action="store_true",
        help="also score videos of the groups the checkpoint trained on (optimistic: they are left out by default)",
    )
    parser.add_argument(
        "--allow-few-videos",
        action="store_true",
        help="calibrate even on fewer than 5 held-out videos of a label (with a warning)",
    )
    parser.add_argument(
        "--hysteresis",
        type=unit_interval,
        default=SERVING_HYSTERESIS,
        help=f"the detector's verdict hysteresis, to check the threshold against (default {SERVING_HYSTERESIS})",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--crop-geometry", type=int, default=SERVING_CROP_GEOMETRY)
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        if args.calibrate is not None and args.calibrate.resolve() == args.checkpoint.resolve():
            raise EvaluationError("--calibrate OUT must be a new file, not the checkpoint itself")
        manifest = read_manifest(args.data)
        if manifest.crop_geometry != args.crop_geometry:
            raise EvaluationError(
                f"{manifest.root} was cut with crop geometry {manifest.crop_geometry}, serving uses "
                f"{args.crop_geometry}: prepare it again (or pass --crop-geometry {manifest.crop_geometry})"
            )
        device = resolve_device(args.device)
        loaded = load_checkpoint(args.checkpoint)
        window = args.window or loaded.trained_window or 20
        chosen = chosen_videos(manifest, args.split)
        selection = held_out(manifest, chosen, loaded.metrics, args.include_training_groups)
        videos = selection.videos
        longest = longest_track(manifest, videos)
        if longest < window:
            raise EvaluationError(
                f"--window {window} is longer than every face track in the chosen videos (longest: {longest} crops): "
                "use a shorter --window or prepare with a larger --max-frames"
            )
        few = None
        if args.calibrate is not None:
            few = calibration_size_check(videos_per_label(manifest, videos, window), args.allow_few_videos)
        for line in (selection.note, few):  # after every check: bad input stays one error line
            if line:
                print(line, file=sys.stderr)
        report, curves = evaluate(
            loaded,
            manifest,
            videos,
            window,
            args.window_mode,
            args.target_fpr,
            device,
            not args.no_progress,
            args.hysteresis,
        )
        report["held_out"] = {"videos": len(videos), "left_out": selection.left_out, "overlap": selection.overlap}
        out = args.out or Path("runs/eval") / args.checkpoint.stem
        out.mkdir(parents=True, exist_ok=True)
        report["plots"] = {
            "roc": str(plot_roc(curves["roc"], out / "roc.png", curves["marked"])),
            "reliability": str(plot_reliability(curves["reliability"], out / "reliability.png")),
        }
        if args.calibrate is not None:
            report["calibrated_copy"] = str(calibrated_copy(loaded, report, args.calibrate, window))
        (out / "report.json").write_text(json.dumps(report, indent=1))
    except (EvaluationError, PreparedDataError, CheckpointError, TrainError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: nothing written", file=sys.stderr)
        return 130
    print_summary(report, out, window)
    return 0


def print_summary(report: dict[str, Any], out: Path, window: int) -> None:
    video, frame, point = report["video"], report["frame"], report["threshold_for_target"]
    note = "" if window >= MIN_WINDOW else f" (window {window} is below the live minimum {MIN_WINDOW})"
    level = f"{100 * report['confidence']['level']:g}% CI"
    print(f"{report['checkpoint']} on {report['data']}, window {window}{note}:")
    print(
        f"  video level: {video['real']} REAL, {video['fake']} FAKE: AUC {video['auc']:.3f} over {video['videos']} "
        f"videos ({level} {_interval(video)}), EER {video['eer']:.3f}, accuracy {video['accuracy_at_threshold']:.3f} "
        f"at threshold {report['checkpoint_threshold']:.3f}"
    )
    print(
        f"  frame level: {frame['samples']} windows of {frame['videos']} videos: AUC {frame['auc']:.3f} ({level} "
        f"{_interval(frame)}, by video), EER {frame['eer']:.3f}, accuracy {frame['accuracy_at_threshold']:.3f}, ECE "
        f"{frame['ece']:.3f}"
    )
    print(
        f"  threshold for {100 * report['target_fpr']:g}% false alarms: {point['threshold']:.4f} (false alarms "
        f"{100 * point['fpr']:.1f}%, detection {100 * point['tpr']:.1f}%)"
    )
    spread, band = report["score_spread"], report["verdict_band"]
    print(f"  window scores span {spread['min']:.3f}–{spread['max']:.3f} (median {spread['median']:.3f})")
    if band["warning"]:
        print(f"  warning: {band['warning']} (the detector's verdicts.hysteresis)")
    if report.get("calibrated_copy"):
        print(f"  calibrated copy: {report['calibrated_copy']} (the live pipeline uses its threshold by default)")
    print(f"  report: {out / 'report.json'}; plots: {report['plots']['roc']}, {report['plots']['reliability']}")


def _interval(level: dict[str, Any]) -> str:
    low, high = level["auc_ci"]
    return f"{low:.3f}–{high:.3f}"


if __name__ == "__main__":
    sys.exit(main())
