"""`python -m stream.training.prepare SOURCE OUT_DIR`: cut training crops from labelled videos with the live
pipeline's own detect -> track -> crop unit (training/serving parity), into compact per-video files plus a manifest.

Resumable (videos already in OUT_DIR's manifest are skipped); unreadable videos are listed and skipped.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.cli import EXIT_INTERRUPTED, OneLineParser, positive_int
from model.prepared import (
    Manifest,
    PreparedDataError,
    PreparedTrack,
    PreparedVideo,
    Unreadable,
    read_manifest,
    save_crops,
    write_manifest,
)
from model.preprocess import resize_crop
from model.progress import Progress
from stream.capture.decoding import decode_frames, open_container
from stream.capture.references import SourceError, TruncatedFile, parse_source
from stream.config import DEFAULT_CONFIG, ConfigError, Settings, SourceOptions, load_settings
from stream.faces.cropper import build_cropper, crop_geometry
from stream.records import Frame
from stream.training.datasets import Dataset, DatasetError, LabelledVideo, find_dataset

INPUT_SIZE = 112


@dataclass(frozen=True)
class VideoCrops:
    """What one video gave: each track's crops [N, 112, 112, 3] uint8 BGR, and how its decoding went."""

    tracks: dict[int, np.ndarray]
    frames_read: int
    truncated: bool


def cut_video(path: Path, settings: Settings, max_frames: int | None, size: int = INPUT_SIZE) -> VideoCrops:
    """Decode `path` and crop every tracked face as serving does; SourceError when it cannot be read at all."""
    spec = parse_source(str(path))
    container = open_container(spec, SourceOptions())
    cropper = build_cropper(path.stem, settings)
    per_track: dict[int, list[np.ndarray]] = {}
    frames_read, truncated = 0, False
    try:
        for decoded in decode_frames(container, spec):
            if max_frames is not None and frames_read >= max_frames:
                break
            frame = Frame(path.stem, frames_read, 0.0, decoded.t_media, decoded.image_bgr)
            frames_read += 1
            for crop in cropper.crops(frame):
                resized = resize_crop(crop.image_bgr, size).permute(1, 2, 0).numpy()
                per_track.setdefault(crop.track.track_id, []).append(resized)
    except TruncatedFile:
        truncated = True
    finally:
        container.close()
        cropper.close()
    if frames_read == 0:
        raise SourceError(f"{path} has no decodable frame")
    return VideoCrops({t: np.stack(c) for t, c in per_track.items()}, frames_read, truncated)


def crops_file_name(file: str) -> str:
    return "crops/" + file.replace("/", "__").rsplit(".", 1)[0] + ".npz"


def start_manifest(dataset: Dataset, out_dir: Path, geometry: int, max_frames: int | None) -> Manifest:
    """A new manifest, or the one already in OUT_DIR when it was made from the same source the same way."""
    fresh = Manifest(out_dir, str(dataset.root.resolve()), dataset.layout, geometry, INPUT_SIZE, "BGR", max_frames)
    if not (out_dir / "manifest.json").exists():
        return fresh
    old = read_manifest(out_dir)
    for field_name, shown in (("source", "source"), ("crop_geometry", "crop geometry"), ("max_frames", "--max-frames")):
        if getattr(old, field_name) != getattr(fresh, field_name):
            raise PreparedDataError(
                f"{out_dir} was prepared with {shown} {getattr(old, field_name)}, not {getattr(fresh, field_name)}: "
                "give another OUT_DIR (or delete it) to prepare again"
            )
    return old


def prepare(
    dataset: Dataset, out_dir: Path, settings: Settings, max_frames: int | None = None, progress: bool = True
) -> Manifest:
    """Cut every video of `dataset` not yet in OUT_DIR's manifest; the manifest is rewritten after each video."""
    (out_dir / "crops").mkdir(parents=True, exist_ok=True)
    manifest = start_manifest(dataset, out_dir, crop_geometry(settings.faces), max_frames)
    done = {v.file for v in manifest.videos if (out_dir / v.crops_file).is_file()}
    todo = [v for v in dataset.videos if v.file not in done]
    if done and todo:
        print(f"resuming: {len(done)} videos already prepared, {len(todo)} to go", file=sys.stderr)
    bar = Progress("prepare", len(todo), unit="videos") if progress else None
    crops_total = 0
    for index, video in enumerate(todo):
        manifest = _prepare_one(manifest, video, settings, max_frames)
        crops_total += sum(t.crops for t in manifest.videos[-1].tracks) if manifest.videos else 0
        write_manifest(manifest)
        if bar:
            bar.update(index + 1, f"{crops_total} crops")
    if bar:
        bar.close()
    write_manifest(manifest)
    return manifest


def _prepare_one(manifest: Manifest, video: LabelledVideo, settings: Settings, max_frames: int | None) -> Manifest:
    try:
        cut = cut_video(video.path, settings, max_frames)
    except SourceError as error:
        return manifest.with_unreadable(Unreadable(video.file, str(error)))
    name = crops_file_name(video.file)
    save_crops(manifest.root / name, cut.tracks)
    tracks = tuple(PreparedTrack(t, len(c)) for t, c in sorted(cut.tracks.items()))
    return manifest.with_video(
        PreparedVideo(video.file, video.label, video.group, video.split, name, cut.frames_read, tracks, cut.truncated)
    )


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m stream.training.prepare",
        description="Cut face crops for training from labelled videos, exactly as the live pipeline crops.",
    )
    parser.add_argument(
        "source", type=Path, help="a folder with labels.csv, or a FaceForensics++ / Celeb-DF v2 / DFDC root"
    )
    parser.add_argument("out_dir", type=Path, help="where crops and manifest.json go (run again to resume)")
    parser.add_argument("--max-frames", type=positive_int, help="read at most this many frames per video")
    parser.add_argument("--config", type=Path, help="the detector's config (its faces/tracking sections are used)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    began = time.monotonic()
    try:
        settings = load_settings(args.config or DEFAULT_CONFIG)
        dataset = find_dataset(args.source)
        if args.out_dir.exists() and not args.out_dir.is_dir():
            raise PreparedDataError(f"OUT_DIR {args.out_dir} is a file: give a folder")
        manifest = prepare(dataset, args.out_dir, settings, args.max_frames, progress=not args.no_progress)
    except (DatasetError, PreparedDataError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: run the same command again to resume into {args.out_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    for item in manifest.unreadable:
        print(f"skipped (unreadable): {item.file}: {item.error}", file=sys.stderr)
    crops = sum(t.crops for v in manifest.videos for t in v.tracks)
    no_faces = sum(1 for v in manifest.videos if not v.tracks)
    print(
        f"prepared {len(manifest.videos)} videos ({dataset.layout}), {crops} crops, {no_faces} without a face, "
        f"{len(manifest.unreadable)} unreadable, crop geometry {manifest.crop_geometry}, in "
        f"{time.monotonic() - began:.1f} s -> {args.out_dir}"
    )
    return 1 if not manifest.videos else 0


if __name__ == "__main__":
    sys.exit(main())
