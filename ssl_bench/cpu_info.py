"""What the host CPU is (its /proc/cpuinfo entry) and whether it multiplies bf16 in hardware: records name their CPU,
and ``precision = auto`` chooses by it."""

from __future__ import annotations

import torch


def cpu_fields() -> dict[str, str]:
    """The first processor's entry of Linux's /proc/cpuinfo (model name, cpu family, model, stepping, flags, ...);
    empty where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            first = f.read().split("\n\n", 1)[0]
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line)}


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX), where bf16 autocast is about twice as fast
    as fp32 for the paper-scale step; elsewhere torch emulates bf16 and it is several times slower
    (docs/training-and-speed.md#speed). ``precision = auto`` and the records' ``host.native_bf16`` both ask this."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's (private) feature tests
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)
