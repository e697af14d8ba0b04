"""What CPU this is (a line beside every benchmark table, part of the engine choice's key) and how much we may use.

`cpu_budget()` is what every engine sizes its thread pool by.
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_description() -> str:
    """E.g. 'AMD EPYC (avx2, avx512f, avx512_vnni, avx512_bf16), 2 logical CPUs'."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    features = [feature for feature in FEATURES if feature in flags]
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{name} ({', '.join(features) or 'no AVX2'}), {usable} logical CPUs"


def cpu_budget() -> int:
    """How many CPUs this process may use: its affinity mask, lowered by a cgroup CPU quota (containers).

    Neither torch's nor ONNX Runtime's default sees a quota, so a container allowed 2 CPUs on a 64-core host
    would start 64 threads that contend for 2.
    """
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota()
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")) -> float | None:
    """This process's cgroup CPU limit in CPUs (v2 `cpu.max`, v1 `cpu.cfs_quota_us`); None when unlimited.

    `membership` is /proc/self/cgroup's format (`id:controllers:/group`); `root` is where cgroups are mounted.
    """
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, group = parts
        v2 = controllers == ""
        if not v2 and "cpu" not in controllers.split(","):
            continue
        mount = root if v2 else root / controllers
        for folder in (mount / group.lstrip("/"), mount):  # the process's own group, else the mount's root
            quota = _read_cpu_quota(folder, v2)
            if quota is not None:
                return quota
    return None


def _read_cpu_quota(folder: Path, v2: bool) -> float | None:
    try:
        if v2:
            quota, period = (folder / "cpu.max").read_text().split()  # "<quota|max> <period>"
        else:
            quota, period = ((folder / f"cpu.cfs_{n}_us").read_text().strip() for n in ("quota", "period"))
        return None if quota in ("max", "-1") else float(quota) / float(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None
