"""What CPU this is, in one line: its name, the vector features that decide which engine is fastest, and how many
logical CPUs this process may use. Printed beside every benchmark table and part of the engine choice's cache key."""

from __future__ import annotations

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
