"""Every registered Triton implementation against its op's reference on the GPU, in bf16, fp16 and fp32.

The CPU tier checks Triton kernels under TRITON_INTERPRET=1 in fp16/fp32 only (bf16 `tl.dot` is wrong in the
interpreter: docs/design.md); this is where the compiled kernels and bf16 are checked, with the `gpu` input profile
(LLaMA-3-8B/SmolLM2 heads, long caches). Examples per dtype: the profile's 200, or GPU_CONFORM_EXAMPLES.
Run with `pytest -m gpu suites/conformance`. With LONGCTX_RESULTS=DIR set (ci/gpu.sh sets it) each kernel's
report, and its speed against the reference and the copy roofline, go into DIR/conformance.jsonl exactly as
`python -m harness conform --profile gpu --device cuda` writes them, so the kernels board shows the GPU runs.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
import torch

from harness.kernels.conformance import uses_triton
from harness.kernels.conformance_report import dtype_name, run_and_record
from reference.registry import all_ops, get_op, implementations

pytestmark = pytest.mark.gpu

OPTIMIZED = Path(__file__).resolve().parents[2] / "optimized"


def _triton_impls() -> list[tuple[str, str]]:
    """(op, impl name) of every Triton implementation: each optimized/triton_*.py is imported, listed or not."""
    for path in sorted(OPTIMIZED.glob("triton_*.py")):
        importlib.import_module(f"optimized.{path.stem}")
    return [(op, name) for op in sorted(all_ops()) for name, fn in implementations(op).items()
            if name == "triton" or uses_triton(fn)]


@pytest.mark.parametrize("op, impl", _triton_impls() or [pytest.param(None, None, marks=pytest.mark.skip("no Triton impl"))])
def test_triton_impl_conforms_on_gpu(op, impl):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    dtypes = tuple(d for d in (torch.bfloat16, torch.float16, torch.float32) if d in get_op(op).dtypes)
    examples = int(os.environ.get("GPU_CONFORM_EXAMPLES", "0")) or None
    fn = implementations(op)[impl]
    report, speed, _ = run_and_record(op, fn, impl, profile="gpu", device="cuda", max_examples=examples,
                                      dtypes=dtypes, results=os.environ.get("LONGCTX_RESULTS") or None,
                                      progress=print)
    assert set(report.dtypes) == {dtype_name(d) for d in dtypes}, report.dtypes
    assert report.passed, report.summary()
    if speed is not None:
        assert "impl_ms" in speed, f"{op}/{impl}: conforming, but not timed: {speed.get('error')}"
