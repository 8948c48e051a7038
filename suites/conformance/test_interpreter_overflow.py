"""The switch for the Triton interpreter's int32 overflow checks (harness/kernels/interpreter.py).

A kernel multiplies two int32 tensors whose product passes 2**31. Left as Triton sets it, the interpreter gives the
wrapped int32 product (the checks are computed and dropped), and so it does with the checks off, as a compiled
kernel does; with them on it refuses the product naming the overflow. The kernel runs in a subprocess so that
TRITON_INTERPRET=1 is set before triton is imported and the setting does not leak into other tests (on a GPU
runner too). When the default case starts raising, a Triton release made the interpreter's checks real, and turning
them off in suites/conftest.py would drop a check: reconsider it then.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.kernels.interpreter import ENV, overflow_checks_wanted, set_overflow_checks

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, sys, torch, triton, triton.language as tl
    from harness.kernels.interpreter import set_overflow_checks

    @triton.jit
    def product(a_ptr, b_ptr, c_ptr, N: tl.constexpr):
        r = tl.arange(0, N)
        tl.store(c_ptr + r, tl.load(a_ptr + r) * tl.load(b_ptr + r))

    g = torch.Generator().manual_seed(int(sys.argv[2]))
    a = torch.randint(1 << 20, 1 << 21, (16,), generator=g, dtype=torch.int32)
    b = torch.randint(1 << 12, 1 << 13, (16,), generator=g, dtype=torch.int32)
    c = torch.empty_like(a)
    previous = set_overflow_checks(sys.argv[1] == "on") if sys.argv[1] != "default" else None
    try:
        product[(1,)](a, b, c, N=16)
        outcome = {"raised": None, "c": c.tolist()}
    except Exception as exc:
        outcome = {"raised": repr(exc)}
    wrapped = ((a.long() * b.long() + (1 << 31)) % (1 << 32) - (1 << 31)).tolist()
    print(json.dumps({"previous": previous, "wrapped": wrapped, **outcome}))
    """
)


def _run(mode: str, seed: int) -> dict:
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode, str(seed)], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["default", "on", "off"])
def test_the_switch_turns_the_interpreter_overflow_checks_on_and_off(mode):
    seed = int.from_bytes(os.urandom(4), "little")
    out = _run(mode, seed)
    if mode != "default":
        assert out["previous"] is False, f"a fresh interpreter's checks should not raise (seed {seed}): {out}"
    if mode == "on":
        assert out["raised"] is not None and "overflow" in out["raised"], f"seed {seed}: {out}"
    else:
        assert out["raised"] is None, f"seed {seed}: {out}"
        assert out["c"] == out["wrapped"], f"seed {seed}: the product should wrap like int32 on a GPU"


def test_bad_settings_are_refused_naming_the_argument(monkeypatch):
    with pytest.raises(TypeError, match="on must be a bool"):
        set_overflow_checks(1)
    monkeypatch.setenv(ENV, "yes")
    with pytest.raises(ValueError, match=ENV):
        overflow_checks_wanted()
    monkeypatch.setenv(ENV, "1")
    assert overflow_checks_wanted() is True
    monkeypatch.delenv(ENV)
    assert overflow_checks_wanted() is False
