"""Which number format trains fastest on this machine, for Keras' mixed precision.

Mixed precision computes in 16-bit floats and keeps the weights in float32.
It is much faster on hardware with 16-bit arithmetic units and slower
everywhere else, so it is chosen per machine rather than switched on always.
"""

from __future__ import annotations

import os
from pathlib import Path

POLICY_ENV = "UNET_PRECISION"  # set to one of POLICIES to override the choice
POLICIES = ("float32", "mixed_float16", "mixed_bfloat16")
# CPU flags (Linux /proc/cpuinfo) of native bfloat16 arithmetic: AVX-512 BF16 and Intel AMX.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The feature flags of the first CPU; empty where the system does not list them (macOS, Windows)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def fast_policy(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The Keras dtype policy to train with here.

    ``mixed_float16`` on an NVIDIA GPU with tensor cores (compute capability 7.0
    or newer), ``mixed_bfloat16`` on a CPU with native bfloat16 arithmetic, and
    ``float32`` otherwise.  ``UNET_PRECISION`` overrides the choice.
    """
    chosen = os.environ.get(POLICY_ENV, "").strip()
    if chosen:
        if chosen not in POLICIES:
            # Caught here: Keras would only fail later, deep inside the training cell.
            raise ValueError(f"{POLICY_ENV}={chosen!r} is not a precision this notebook trains in; "
                             f"use one of {', '.join(POLICIES)}, or unset it to let the machine decide.")
        return chosen
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        major, _ = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
        return "mixed_float16" if major >= 7 else "float32"
    return "mixed_bfloat16" if BF16_CPU_FLAGS & cpu_flags(cpuinfo) else "float32"
