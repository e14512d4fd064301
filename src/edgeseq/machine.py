"""The machine a figure was measured on: CPU, the cpuid features onnxruntime's kernels depend on, and the
kernels those features select. Recorded with every CPU-dependent figure (quantization report, bench).

onnxruntime's MLAS picks its int8 GEMM kernel from cpuid, and the kernels do not compute alike: the AVX2
kernel (and AVX512 without VNNI) sums pairs of u8 x s8 products in int16 with saturation (vpmaddubsw); the
SSE2 and VNNI kernels are exact in int32. The same int8 file therefore gives other figures on another CPU
(measured by benchmarks/int8_cpu_spread.py: letter_rnn dynamic-int8 differs from fp32 by up to 0.069 on
AVX2 and 0.0055 on SSE2 or AVX512-VNNI). Float kernels (SSE, AVX, FMA3, AVX512F) differ far less.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

# numpy's names for the cpuid features that decide onnxruntime's (and LiteRT's) kernels.
RELEVANT = (
    "SSE41", "SSE42", "AVX", "F16C", "FMA3", "AVX2", "AVX512F", "AVX512BW", "AVX512DQ", "AVX512VL",
    "AVX512VNNI", "AVXVNNI", "AVX512_BF16", "ASIMD", "ASIMDHP", "ASIMDDP", "ASIMDFHM", "SVE",
)  # fmt: skip


def cpu_features() -> list[str]:
    """The features this process sees through cpuid (numpy reads cpuid itself, on any OS, and under an
    emulator it sees the emulated CPU, where /proc/cpuinfo would show the host's)."""
    from numpy._core._multiarray_umath import __cpu_features__ as features

    return sorted(name for name, present in features.items() if present)


def mlas_kernels(features: list[str] | set[str], arch: str = "x86_64") -> dict[str, str]:
    """The GEMM kernels onnxruntime's MLAS (mlas/lib/platform.cpp) selects for these features."""
    f = set(features)
    if arch not in ("x86_64", "AMD64"):
        dot = "with" if "ASIMDDP" in f else "without"
        return {"int8": f"NEON, {dot} dot product", "float": "NEON"}
    avx2 = {"AVX", "AVX2", "FMA3"} <= f
    avx512f = avx2 and "AVX512F" in f
    avx512core = avx512f and {"AVX512BW", "AVX512DQ", "AVX512VL"} <= f
    if avx512core and "AVX512VNNI" in f:
        int8 = "AVX512-VNNI (exact int32)"
    elif avx512core:
        int8 = "AVX512 core (int16 saturation)"
    elif avx2 and "AVXVNNI" in f:
        int8 = "AVX-VNNI (exact int32)"
    elif avx2:
        int8 = "AVX2 (int16 saturation)"
    else:
        int8 = "SSE2 (exact int32)"
    float_kernel = "AVX512F" if avx512f else "FMA3" if avx2 else "AVX" if "AVX" in f else "SSE"
    return {"int8": int8, "float": float_kernel}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_cpu() -> dict[str, Any]:
    """What to record beside a CPU-dependent figure."""
    from importlib.metadata import version

    features = cpu_features()
    kernels = mlas_kernels(features, platform.machine())
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "features": [f for f in RELEVANT if f in features],
        "onnxruntime_int8_kernel": kernels["int8"],
        "onnxruntime_float_kernel": kernels["float"],
        "onnxruntime": version("onnxruntime"),
    }
