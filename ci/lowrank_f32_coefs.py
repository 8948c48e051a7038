"""The low-rank decode ops with the cache's coefficients and moment statistics in float32, as the KV method stores
them, whatever the queries' dtype: conformance inputs cast every floating input to the dtype under test, so these
wrappers let the harness check the path float32 coefficients take (the query spectrum as TF32 GEMMs) on 16-bit
queries. The values are the drawn ones, widened exactly, so the oracle is unchanged.

    PYTHONPATH=. python -m harness conform --op fourier_decode_attention --impl ci.lowrank_f32_coefs:uniform ...

`uniform_bf16_gemms` and `varlen_bf16_gemms` take the real GEMMs (A on the GEMM path, v_gemm's planes) in bfloat16
(gemm_precs ("bf16", "bf16")), the candidate the GPU sweep timed against TF32 (now the default). `uniform_warps8`
and `varlen_warps8` run the stream at 8 warps at every shape (`STREAM_WARPS_FEW` 8 since). `uniform_folds` and
`varlen_folds` take the coefficient folds (optimized/lowrank_folds.py) wherever the path allows them, in the plan's
default precisions; `uniform_folds_kv16` and `varlen_folds_kv16` take both folds in bfloat16 (`fold_precs`), and
`uniform_folds_k32` and `varlen_folds_k32` both in TF32 (the default before FoldK went to bfloat16).
"""
from __future__ import annotations

import functools

from optimized.triton_fourier_lowrank import (fourier_decode_attention_lowrank,
                                              fourier_decode_attention_varlen_lowrank, lowrank_plan,
                                              varlen_lowrank_plan)

COEFFICIENTS = ("k_cos", "k_sin", "k_scale", "k_shift", "v_cos", "v_sin", "v_scale", "v_shift")


def _widen(kw: dict) -> dict:
    """The inputs with the coefficients and moment statistics in float32."""
    return {k: v.float() if k in COEFFICIENTS else v for k, v in kw.items()}


def _widened(op, **fixed):
    @functools.wraps(op)
    def run(**kw):
        return op(**_widen(kw), **fixed)
    return run


def _folded(plan_of, op, precs):
    """The op through its plan with the folds in precisions `precs` (FoldK's, FoldV's). The plan skips the op's
    input checks; the conformance inputs are valid ones."""
    @functools.wraps(op)
    def run(**kw):
        plan = plan_of(**_widen(kw), folds=True)
        plan.fold_precs = precs
        return plan.run()
    return run


uniform = _widened(fourier_decode_attention_lowrank)
varlen = _widened(fourier_decode_attention_varlen_lowrank)
uniform_bf16_gemms = _widened(fourier_decode_attention_lowrank, gemm_precs=("bf16", "bf16"))
varlen_bf16_gemms = _widened(fourier_decode_attention_varlen_lowrank, gemm_precs=("bf16", "bf16"))
uniform_warps8 = _widened(fourier_decode_attention_lowrank, num_warps=8)
varlen_warps8 = _widened(fourier_decode_attention_varlen_lowrank, num_warps=8)
uniform_folds = _widened(fourier_decode_attention_lowrank, folds=True)
varlen_folds = _widened(fourier_decode_attention_varlen_lowrank, folds=True)
uniform_folds_kv16 = _folded(lowrank_plan, fourier_decode_attention_lowrank, ("bf16", "bf16"))
varlen_folds_kv16 = _folded(varlen_lowrank_plan, fourier_decode_attention_varlen_lowrank, ("bf16", "bf16"))
uniform_folds_k32 = _folded(lowrank_plan, fourier_decode_attention_lowrank, ("tf32", "tf32"))
varlen_folds_k32 = _folded(varlen_lowrank_plan, fourier_decode_attention_varlen_lowrank, ("tf32", "tf32"))
uniform_dense = _widened(fourier_decode_attention_lowrank, dense=True)
varlen_dense = _widened(fourier_decode_attention_varlen_lowrank, dense=True)
