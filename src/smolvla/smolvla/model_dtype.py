"""Which dtype the model runs in on a given device: `dtype="auto"` and the warning for emulated bfloat16.

bfloat16 halves the work of a matrix product only where the hardware multiplies bf16 natively: CUDA GPUs from
Ampere on, x86 CPUs with AVX512-BF16 or AMX, ARM CPUs with the BF16 extension. Elsewhere PyTorch converts every
block to float32 and back, and a chunk takes several times longer than in float32 (measured on a 2-core AVX2 AMD
EPYC: 10.8 GFLOP/s against 66.9 for float32, 82 s against 11 s per 2-camera chunk; docs/model.md, "Speed").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# No torch import here: the ROS nodes validate their dtype parameter with this module before torch is loaded.

DTYPE_CHOICES = ("auto", "float32", "bfloat16")

#: /proc/cpuinfo flags that mean native bf16 matrix products (x86: "flags", ARM: "Features").
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@dataclass(frozen=True)
class DtypeChoice:
    """The dtype to load the model in, why, and a warning when the request will be slow on this device."""

    dtype: str
    reason: str
    warning: str | None = None


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str] | None:
    """The CPU's feature flags from /proc/cpuinfo; None where the file does not exist (macOS, Windows)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


def device_type(device: object) -> str:
    """'cpu', 'cuda', 'mps', ... of a device string ('cuda:1') or torch.device."""
    return str(device).split(":", 1)[0]


def native_bfloat16(device: object, flags: frozenset[str] | None = None) -> bool | None:
    """Whether `device` multiplies bf16 natively: True, False, or None where it cannot be told (a CPU without
    /proc/cpuinfo, MPS). `flags` are the CPU's feature flags (default: read from /proc/cpuinfo)."""
    kind = device_type(device)
    if kind == "cuda":
        import torch

        # Without including_emulation=False, torch reports bf16 as supported on GPUs that only emulate it.
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if kind != "cpu":
        return None
    flags = cpu_flags() if flags is None else flags
    if flags is None:
        return None
    return bool(NATIVE_BF16_CPU_FLAGS & flags)


def resolve_dtype(requested: str, device: object, flags: frozenset[str] | None = None) -> DtypeChoice:
    """`requested` ('auto', 'float32' or 'bfloat16') -> the dtype to use on `device`.

    'auto' is bfloat16 where the device multiplies it natively and float32 everywhere else (including where that
    cannot be told). An explicit 'bfloat16' is kept, with a warning where it is known to be emulated.
    """
    if requested not in DTYPE_CHOICES:
        raise ValueError(f"dtype must be one of {list(DTYPE_CHOICES)}, got {requested!r}")
    native = native_bfloat16(device, flags)
    where = (
        f"{device_type(device)} "
        + {
            True: "multiplies bfloat16 natively",
            False: "has no native bfloat16 (no AVX512-BF16/AMX/BF16 flag, or a GPU before Ampere)",
            None: "native bfloat16 unknown",
        }[native]
    )
    if requested == "auto":
        return DtypeChoice("bfloat16" if native else "float32", f"auto: {where}")
    warning = None
    if requested == "bfloat16" and native is False:
        warning = (
            f"dtype bfloat16 on a device that emulates it ({where}): a chunk takes several times longer than in "
            "float32 (about 7x on a 2-core AVX2 CPU, measured); set dtype to auto or float32"
        )
    return DtypeChoice(requested, "as set", warning)
