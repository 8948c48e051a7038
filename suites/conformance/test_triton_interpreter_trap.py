"""Known trap (docs/testing.md): under TRITON_INTERPRET=1, `tl.dot` on bfloat16 operands returns garbage.

Observed here with triton 3.9 on CPU: relative error ~3e9 on a 64x64 bf16 product, while fp32 and fp16 are right
to ~3e-7. So interpreter conformance checks fp32 and fp16 only (harness.kernels.conformance.default_dtypes) and bf16
Triton kernels are checked on the GPU. When this test starts failing because the bf16 product became right, a
Triton release fixed the trap: enable bf16 in interpreter conformance (default_dtypes) and turn this test into
a plain bf16 check.

The kernel runs in a subprocess so that TRITON_INTERPRET=1 is set before triton is imported and does not leak
into other tests.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, torch, triton, triton.language as tl

    @triton.jit
    def dot_tile(a_ptr, b_ptr, c_ptr, N: tl.constexpr):
        r = tl.arange(0, N)
        a = tl.load(a_ptr + r[:, None] * N + r[None, :])
        b = tl.load(b_ptr + r[:, None] * N + r[None, :])
        tl.store(c_ptr + r[:, None] * N + r[None, :], tl.dot(a, b))  # float32 accumulator

    rel = {}
    g = torch.Generator().manual_seed(0)
    for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
        a = torch.randn(64, 64, generator=g).to(dtype)
        b = torch.randn(64, 64, generator=g).to(dtype)
        c = torch.empty(64, 64, dtype=torch.float32)
        dot_tile[(1,)](a, b, c, N=64)
        want = a.double() @ b.double()  # exact product of the rounded operands
        rel[name] = float((c.double() - want).abs().max() / want.abs().max())
    print(json.dumps({"triton": triton.__version__, "rel": rel}))
    """
)


def test_interpreter_bf16_dot_trap():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    rel = seen["rel"]
    assert rel["fp32"] < 1e-3, seen
    assert rel["fp16"] < 1e-3, seen
    assert rel["bf16"] > 1.0, f"bf16 tl.dot is right under the interpreter now ({seen}): the trap is fixed, see the docstring"
