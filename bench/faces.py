"""One person, one face id: the detect → track → crop unit on made videos with ground truth (tests/face_scenes.py).

For each scene (the common case, one face at 640x480, first) and each settings row: recall, ids per true face
(min/max), windows scored vs the ideal (window 10), false tracks, duplicate face-frames, and the milliseconds of
`cropper.crops(frame)` per frame (p50/p95); then the same numbers over all scenes per row. A row is a set of dotted
setting overrides; `defaults` (no overrides) always runs, and `--row` adds more, measured in the same run:
Run: `.venv/bin/python bench/faces.py [--row NAME=KEY:VALUE,KEY:VALUE ...] [--scenes a,b] [--warmup 5]`, e.g.
`.venv/bin/python bench/faces.py --row whole_frame=faces.mode:full_frame --row low=faces.min_score:0.3`.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import describe_machine, print_table
from tests.face_scenes import BENCH_SCENES, WINDOW, IdentityMetrics, make_scene, measure_settings


def cpu_model() -> str:
    """The CPU's marketing name (from /proc/cpuinfo on Linux), and the logical CPUs this process may use."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name}, {usable} logical CPUs"


def parse_row(text: str) -> tuple[str, dict[str, Any]]:
    """`name=faces.mode:roi,faces.min_score:0.3` -> ("name", {"faces.mode": "roi", "faces.min_score": 0.3})."""
    name, equals, spec = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"a row is NAME=KEY:VALUE[,KEY:VALUE...], got {text!r}")
    overrides: dict[str, Any] = {}
    for item in filter(None, spec.split(",")):
        key, colon, value = item.partition(":")
        if not colon or not key:
            raise argparse.ArgumentTypeError(f"row {name}: {item!r} is not KEY:VALUE")
        overrides[key.strip()] = yaml.safe_load(value)  # 0.3 -> float, 10 -> int, true -> bool, roi -> str
    return name, overrides


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def scene_row(row: str, metrics: IdentityMetrics) -> list[object]:
    ids = metrics.ids_per_face
    return [
        metrics.scene,
        row,
        metrics.frames,
        len(metrics.faces),
        _ratio(metrics.recall),
        f"{min(ids)}/{max(ids)}" if ids else "-",
        f"{metrics.windows}/{metrics.ideal_windows}",
        _ratio(metrics.windows_ratio),
        len(metrics.false_tracks),
        metrics.duplicate_frames,
        f"{metrics.ms_percentile(50):.1f}",
        f"{metrics.ms_percentile(95):.1f}",
    ]


def total_row(row: str, runs: list[IdentityMetrics]) -> list[object]:
    faces = [face for metrics in runs for face in metrics.faces]
    counted = sum(face.counted_frames for face in faces)
    windows, ideal = sum(face.windows for face in faces), sum(face.ideal_windows for face in faces)
    return [
        row,
        len(runs),
        _ratio(sum(face.covered_frames for face in faces) / counted if counted else None),
        f"{sum(len(face.track_ids) == 1 for face in faces)}/{len(faces)}",
        f"{windows}/{ideal}",
        _ratio(windows / ideal if ideal else None),
        sum(len(metrics.false_tracks) for metrics in runs),
        sum(metrics.duplicate_frames for metrics in runs),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--row", action="append", type=parse_row, default=[], help="NAME=KEY:VALUE[,KEY:VALUE...]")
    parser.add_argument("--scenes", default=",".join(BENCH_SCENES), help="comma-separated scene names")
    parser.add_argument("--warmup", type=int, default=5, help="frames fed to a throwaway unit before each timing")
    args = parser.parse_args()

    rows = [("defaults", {}), *args.row]
    names = [name for name in args.scenes.split(",") if name]
    print(f"cpu: {cpu_model()}; {describe_machine(torch.device('cpu'))}")
    print(f"window {WINDOW}; rows: " + "; ".join(f"{name} {overrides or '(none)'}" for name, overrides in rows))
    table, runs = [], {name: [] for name, _ in rows}
    started = time.perf_counter()
    for scene_name in names:
        scene = make_scene(scene_name)
        for row, overrides in rows:
            metrics = measure_settings(scene, overrides, warmup=args.warmup)
            runs[row].append(metrics)
            table.append(scene_row(row, metrics))
    headers = ["scene", "row", "frames", "faces", "recall", "ids min/max", "windows", "w/ideal", "false", "dup"]
    print_table([*headers, "ms p50", "ms p95"], table)
    print()
    headers = ["row", "scenes", "recall", "faces 1 id", "windows", "w/ideal", "false tracks", "dup frames"]
    print_table(headers, [total_row(row, runs[row]) for row, _ in rows])
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
