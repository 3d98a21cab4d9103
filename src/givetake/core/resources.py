"""What this process may use of the machine."""

from __future__ import annotations

import os


def available_cores() -> int:
    """CPU cores this process may use (respects affinity masks and containers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def native_bf16(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> bool:
    """Whether the CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX), read from ``cpuinfo``.

    Training uses bf16 autocast by default only there: with these instructions a training step ran
    about 1.6 times faster than in fp32 (bench/RESULTS.md, "Training step"). Without them the CPU
    emulates bf16 in wider instructions, where the gain is unmeasured and can be a loss, so fp32 stays.
    False where the file cannot be read (not Linux).
    """
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.partition(":")[2].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        return False
    return False
