"""Programmatic dependent launch of the low-rank kernel's four Triton launches (`pdl`): on where the GPU has it
(sm_90 and later), never in the interpreter, and each of those kernels takes the PDL switch that makes it wait
for the kernel before it (the sm_90 build test checks where the wait lands)."""
from __future__ import annotations

import inspect

import pytest
import torch

import optimized.triton_fourier_lowrank as lowrank
from reference.ops.fourier_cache import make_fourier_cache

LAUNCHED_WITH_PDL = ("_prologue_kernel", "_middle_kernel", "_merge_kernel", "_output_kernel")


def test_programmatic_dependent_launch_is_off_in_the_interpreter_and_complete_when_on():
    x = make_fourier_cache(2, 4, 2, 16, 120, 12, n_init=2, n_local=10, dtype=torch.float16, device="cpu", seed=3)
    plan = lowrank.lowrank_plan(**x)
    assert plan.pdl is False and plan._pdl_kw == {}
    plan.pdl = True  # as on an H100: the kernel's switch and the launcher's option go together
    assert plan.pdl_trigger == "exit"  # the next launch starts when this one's programs end
    assert plan._pdl_kw == {"PDL": True, "PDL_EARLY": False, "launch_pdl": True}
    plan.pdl_trigger = "start"  # ... or right after this one's wait
    assert plan._pdl_kw == {"PDL": True, "PDL_EARLY": True, "launch_pdl": True}
    with pytest.raises(ValueError, match="pdl_trigger"):
        plan.pdl_trigger = "end"


def test_every_kernel_launched_with_pdl_has_the_switch_off_by_default():
    for name in LAUNCHED_WITH_PDL:
        params = inspect.signature(getattr(lowrank, name).fn).parameters
        assert "PDL" in params and params["PDL"].default is False, name
        assert "PDL_EARLY" in params, name  # passed with PDL, so every such kernel must take it
