"""Known trap (DESIGN.md): under TRITON_INTERPRET=1, `tl.dot` on bfloat16 operands returns garbage on CPU.

This test documents it so we notice when a Triton release fixes it: fp32 and fp16 products are right, the bf16
one is far off. When it starts failing because bf16 became right, enable bf16 in interpreter conformance
(harness.conformance.default_dtypes) and turn this test into a plain bf16 check.
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
    def matmul_tile(a_ptr, b_ptr, c_ptr, N: tl.constexpr):
        r = tl.arange(0, N)
        a = tl.load(a_ptr + r[:, None] * N + r[None, :])
        b = tl.load(b_ptr + r[:, None] * N + r[None, :])
        tl.store(c_ptr + r[:, None] * N + r[None, :], tl.dot(a, b))

    out = {}
    g = torch.Generator().manual_seed(0)
    for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16), ("bf16", torch.bfloat16)):
        a = torch.randn(64, 64, generator=g).to(dtype)
        b = torch.randn(64, 64, generator=g).to(dtype)
        c = torch.empty(64, 64, dtype=torch.float32)
        matmul_tile[(1,)](a, b, c, N=64)
        ref = a.double() @ b.double()
        out[name] = float((c.double() - ref).abs().max() / ref.abs().max())
    print(json.dumps(out))
    """
)


def test_interpreter_bf16_dot_trap():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rel = json.loads(proc.stdout.strip().splitlines()[-1])
    assert rel["fp32"] < 1e-5, rel
    assert rel["fp16"] < 1e-2, rel
    assert rel["bf16"] > 1.0, f"bf16 tl.dot is now right under the interpreter ({rel}): the trap is fixed, see docstring"
