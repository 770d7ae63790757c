"""precision.fast_policy: 16-bit arithmetic only where the hardware has it."""

from __future__ import annotations

import pytest

import precision
from test_utils import tf

GPU_FREE = not tf.config.list_physical_devices("GPU")


def _cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 {flags}\n\nprocessor\t: 1\n")
    return path


@pytest.mark.skipif(not GPU_FREE, reason="a GPU decides the policy here")
@pytest.mark.parametrize("flags, policy", [("avx512f avx512_bf16", "mixed_bfloat16"),
                                           ("amx_tile amx_bf16", "mixed_bfloat16"),
                                           ("avx512f avx512_vnni", "float32"), ("", "float32")])
def test_cpu_policy_follows_the_bfloat16_flags(tmp_path, monkeypatch, flags, policy):
    monkeypatch.delenv(precision.POLICY_ENV, raising=False)
    assert precision.fast_policy(_cpuinfo(tmp_path, flags)) == policy


@pytest.mark.skipif(not GPU_FREE, reason="a GPU decides the policy here")
def test_without_cpu_flags_it_stays_float32(tmp_path, monkeypatch):
    monkeypatch.delenv(precision.POLICY_ENV, raising=False)
    assert precision.cpu_flags(tmp_path / "missing") == set()
    assert precision.fast_policy(tmp_path / "missing") == "float32"


def test_environment_variable_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv(precision.POLICY_ENV, "float32")
    assert precision.fast_policy(_cpuinfo(tmp_path, "avx512_bf16")) == "float32"


def test_an_unknown_override_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv(precision.POLICY_ENV, "half")
    with pytest.raises(ValueError, match=r"UNET_PRECISION='half'.*float32, mixed_float16, mixed_bfloat16"):
        precision.fast_policy()


def test_the_reference_model_is_the_same_in_mixed_precision(reference):
    before = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = reference["unet_model"]()
    finally:
        tf.keras.mixed_precision.set_global_policy(before)
    assert model.count_params() == 8_640_471
    assert model.layers[-1].compute_dtype == "bfloat16" and model.layers[-1].variable_dtype == "float32"
