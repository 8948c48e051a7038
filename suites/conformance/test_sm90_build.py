"""The token-major and low-rank FlashFourierAttention kernels build for an H100 (sm_90) without a GPU, also with every integer
argument the constant 1, as Triton passes an integer equal to 1 (optimized/sm90_build.py): the CPU interpreter runs
neither the compiler's typing nor its layout rules, and a kernel that rebound a stride in one branch failed on a GPU
only for inputs whose stride is 1. The builds run in a subprocess without TRITON_INTERPRET (the suite's kernels are
interpreted ones, which cannot be compiled)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_DEFAULT_FP_FUSION="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_fourier_kernels_build_for_sm90_with_constant_integer_arguments():
    done = _run(["-m", "optimized.sm90_build"])
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 18, done.stdout  # 9 kernels (3 token-major, 6 low-rank) x int32 / constant-1 integers
    for line in lines:
        regs = int(line.split("REG:")[1].split()[0])
        assert 0 < regs <= 255, line


def test_the_constant_ones_build_catches_a_rebound_argument(tmp_path):
    """The check can fail: a kernel that rebinds an integer argument inside a branch builds with int32 arguments
    and is refused once that argument is the constant 1; written without the rebinding it builds either way."""
    script = tmp_path / "rebind.py"
    script.write_text(textwrap.dedent('''
        import triton
        import triton.language as tl
        from optimized.sm90_build import build_sm90, integer_args

        @triton.jit
        def rebinds(Q, stride, n, flag):
            if tl.program_id(0) > flag:  # a runtime branch (flag alone would be a constant)
                tl.store(Q + n, 1.0)
            else:
                stride = stride * 2  # the other branch keeps the argument: its type must not change here
            tl.store(Q + stride, 1.0)

        @triton.jit
        def keeps(Q, stride, n, flag):
            s = stride
            if tl.program_id(0) > flag:  # a runtime branch (flag alone would be a constant)
                tl.store(Q + n, 1.0)
            else:
                s = stride * 2
            tl.store(Q + s, 1.0)

        assert integer_args(rebinds, {}) == ["stride", "n", "flag"]
        build_sm90(rebinds, {}, "fp32", 4)
        build_sm90(keeps, {}, "fp32", 4, ints_as_one=True)
        print("int32 and rewritten: built")
        try:
            build_sm90(rebinds, {}, "fp32", 4, ints_as_one=True)
        except Exception as exc:
            print("refused:", str(exc).splitlines()[-1])
        else:
            print("built")
        '''))
    done = _run([str(script)])
    assert done.returncode == 0, done.stderr[-3000:]
    built, verdict = done.stdout.splitlines()
    assert built == "int32 and rewritten: built"
    assert verdict.startswith("refused:") and "stride" in verdict, verdict


def test_jit_faithful_build_and_its_loops_tied_to_source(tmp_path):
    """`build_like_jit` specializes as the JIT does (an int equal to 1 becomes a constant; ints and addresses
    divisible by 16 are marked so), and `loop_counts` ties each loop of the cubin to its `for`: here a kernel with
    two loops, both found, each tied to its own `for` line."""
    script = tmp_path / "loops.py"
    script.write_text(textwrap.dedent('''
        import torch
        import triton
        import triton.language as tl
        from pathlib import Path
        from optimized.sass_loops import disassemble, loop_counts
        from optimized.sm90_build import build_like_jit, jit_signature

        @triton.jit
        def two_loops(X, Y, n, one, m, BLOCK: tl.constexpr):
            offs = tl.arange(0, BLOCK)
            acc = tl.zeros((BLOCK,), dtype=tl.float32)
            for i in range(0, n):  # loop A
                acc += tl.load(X + i * m + offs * one)
            for j in range(0, n):  # loop B
                acc = acc * tl.load(X + j * m + offs) + tl.sin(acc)
            tl.store(Y + offs, acc)

        x, y = torch.empty(4096), torch.empty(64)
        sig, consts, attrs = jit_signature(two_loops, (x, y, 48, 1, 7), {"BLOCK": 64})
        print(sig["n"], sig["m"], consts["one"], sorted(k[0] for k in attrs))
        kernel = build_like_jit(two_loops, (x, y, 48, 1, 7), {"BLOCK": 64}, 4)
        src = Path(__file__).read_text().splitlines()
        lines = {i + 1 for i, t in enumerate(src) if t.strip().startswith("for ") and "range(0, n)" in t}
        found = {(l.line, l.instructions > 0) for l in loop_counts(disassemble(kernel), {Path(__file__).name: __file__})}
        print(len(lines) == 2 and sorted(found) == sorted((line, True) for line in lines), sorted(found), sorted(lines))
        '''))
    done = _run([str(script)])
    assert done.returncode == 0, done.stderr[-3000:]
    spec, tied = done.stdout.splitlines()
    assert spec == "i32 i32 1 [0, 1, 2]", spec  # X, Y and n = 48 divisible by 16; m = 7 not; one a constant
    assert tied.startswith("True"), done.stdout


def test_the_stream_with_programmatic_dependent_launch_waits_before_it_reads(tmp_path):
    """With PDL the low-rank stream builds for sm_90 with griddepcontrol.wait ahead of its first global load and
    griddepcontrol.launch_dependents after it; with PDL_EARLY off (`pdl_trigger` "exit") the wait alone; without
    PDL neither instruction is in the kernel."""
    script = tmp_path / "pdl.py"
    script.write_text(textwrap.dedent('''
        from optimized.sm90_build import build_sm90, lowrank_cases

        name, fn, consts = lowrank_cases()[0]
        for pdl, early in ((True, True), (False, True), (True, False)):
            ptx = build_sm90(fn, {**consts, "PDL": pdl, "PDL_EARLY": early}, "bf16", 4).asm["ptx"]
            body = ptx[ptx.index(".entry"):]
            wait, launch = body.find("griddepcontrol.wait"), body.find("griddepcontrol.launch_dependents")
            first_load = min(i for i in (body.find("ld.global"), body.find("cp.async")) if i >= 0)
            print(pdl, wait >= 0, launch >= 0, 0 <= wait < first_load, wait < launch)
        '''))
    done = _run([str(script)])
    assert done.returncode == 0, done.stderr[-3000:]
    on, off, late = done.stdout.splitlines()
    assert on == "True True True True True", on
    assert off.startswith("False False False"), off
    assert late.startswith("True True False True"), late
