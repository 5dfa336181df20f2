"""dtype "auto": bfloat16 only where the device multiplies it natively; a warning for emulated bfloat16."""

from __future__ import annotations

import pytest
import torch

from smolvla import model_dtype
from smolvla.model_dtype import cpu_flags, resolve_dtype
from smolvla.policy import SmolVLAPolicy

AVX2 = frozenset({"fpu", "sse4_2", "avx", "avx2", "fma"})
ZEN5 = AVX2 | {"avx512f", "avx512_bf16", "avx512_vnni"}
SAPPHIRE_RAPIDS = AVX2 | {"avx512f", "amx_tile", "amx_bf16"}
NEOVERSE_V2 = frozenset({"fp", "asimd", "sve", "bf16", "i8mm"})


def test_cpu_flags_read_x86_flags_and_arm_features_and_are_unknown_without_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text(
        "processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu avx2 avx512_bf16\n"
    )
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\nCPU implementer\t: 0x41\n")
    assert cpu_flags(x86) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(arm) == {"fp", "asimd", "bf16", "i8mm"}
    assert cpu_flags(tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(AVX2, "float32"), (ZEN5, "bfloat16"), (SAPPHIRE_RAPIDS, "bfloat16"), (NEOVERSE_V2, "bfloat16")],
)
def test_auto_is_bfloat16_only_on_cpus_that_multiply_it_natively(flags, expected):
    choice = resolve_dtype("auto", "cpu", flags)
    assert choice.dtype == expected and choice.warning is None
    assert choice.reason.startswith("auto: cpu")


def test_auto_is_float32_where_native_bfloat16_cannot_be_told():
    assert resolve_dtype("auto", "mps").dtype == "float32"
    assert "unknown" in resolve_dtype("auto", "mps").reason
    if not torch.cuda.is_available():  # a machine without a GPU cannot multiply bf16 on one
        assert resolve_dtype("auto", "cuda:0").dtype == "float32"


def test_explicit_dtypes_are_kept_and_emulated_bfloat16_is_warned_about():
    emulated = resolve_dtype("bfloat16", "cpu", AVX2)
    assert emulated.dtype == "bfloat16" and "about 7x" in emulated.warning and "auto or float32" in emulated.warning
    assert resolve_dtype("bfloat16", "cpu", ZEN5).warning is None
    assert resolve_dtype("bfloat16", "mps").warning is None  # unknown: no claim either way
    assert resolve_dtype("float32", "cpu", AVX2) == resolve_dtype("float32", "cpu", ZEN5)
    assert resolve_dtype("float32", "cpu", AVX2).warning is None
    with pytest.raises(ValueError, match="auto"):
        resolve_dtype("float16", "cpu", AVX2)


@pytest.mark.parametrize(("flags", "expected"), [(AVX2, torch.float32), (ZEN5, torch.bfloat16)])
def test_from_pretrained_auto_loads_the_dtype_this_cpu_multiplies_natively(tiny_dir, monkeypatch, flags, expected):
    monkeypatch.setattr(model_dtype, "cpu_flags", lambda: flags)
    assert SmolVLAPolicy.from_pretrained(str(tiny_dir), dtype="auto").dtype == expected
