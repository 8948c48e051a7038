"""Triton kernels built for an H100 (sm_90) on a machine without a GPU.

Triton's wheel carries ptxas, so `triton.compile` with an explicit target builds the cubin offline. This catches what
the CPU interpreter cannot: tensor-core shape rules, layout conversions, bfloat16 operands, and the typing of
constant arguments. Triton passes an integer argument equal to 1 as a compile-time constant, so a kernel that
rebinds such an argument in one branch of an `if` builds for most inputs and fails for the one whose stride is 1
(seen on an H100: the token-major kernel's kept-row stride). `build_sm90(..., ints_as_one=True)` builds that variant.
"""
from __future__ import annotations

import inspect
import os
import subprocess
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

TARGET = GPUTarget("cuda", 90, 32)
# Argument types of the FlashFourierAttention kernels, by name; other runtime arguments are int32 (sm_scale float32).
POINTERS = {"KKEPT": "*i64", "VKEPT": "*i64", "KSTART": "*i32", "VSTART": "*i32", "LENS": "*i32", "KCOMP": "*i64",
            "VCOMP": "*i64", "KDIM": "*i32", "CDIM": "*i32", "CIDX": "*i32"}
FLOAT32 = ("Z", "SC", "ACC", "ACCK", "MAX", "SUM", "SPEC", "F", "PO", "A", "H", "HM", "MAXM", "SUMM", "ACCM", "KCOS",
           "KSIN", "KSC", "KSH", "U", "Z0", "MAXE", "SUME", "ACCE", "M", "L", "MID", "HO", "FOLDK", "FOLDV", "PF", "ZK",
           "PLANES")
INPUTS = ("Q", "KE", "VE", "KMID", "VMID", "BCOS", "BSIN", "VCOS", "VSIN", "QBD", "KM", "VM", "VK", "VV", "OUT", "VSC",
          "VSH")


def integer_args(fn, consts: dict) -> list[str]:
    """The runtime integer arguments of `fn` (those `build_sm90` types int32)."""
    return [n for n in inspect.signature(fn.fn).parameters
            if n not in consts and n not in POINTERS and n not in FLOAT32 and n not in INPUTS and n != "sm_scale"]


def build_sm90(fn, consts: dict, dtype: str, num_warps: int, ints_as_one: bool = False):
    """The compiled kernel of `fn` for TARGET: pointers typed by name (inputs of `dtype`, e.g. "bf16"), other
    runtime arguments int32, or with ints_as_one every one of them the constant 1, as Triton specializes them."""
    if ints_as_one:
        consts = {**consts, **{n: 1 for n in integer_args(fn, consts)}}
    names = list(inspect.signature(fn.fn).parameters)
    sig = {}
    for n in names:
        if n in consts:
            sig[n] = "constexpr"
        elif n in POINTERS:
            sig[n] = POINTERS[n]
        elif n in FLOAT32:
            sig[n] = "*fp32"
        elif n in INPUTS:
            sig[n] = "*" + dtype
        else:
            sig[n] = "fp32" if n == "sm_scale" else "i32"
    src = ASTSource(fn, sig, constexprs={(names.index(n),): v for n, v in consts.items()})
    return triton.compile(src, target=TARGET, options={"num_warps": num_warps})


def resources(kernel) -> str:
    """cuobjdump's resource line of the cubin: registers, spill stack, shared memory."""
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(kernel.asm["cubin"])
    try:
        out = subprocess.run([str(tool), "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(f.name)
    line = next(row for row in out.splitlines() if "REG:" in row)
    return " ".join(w for w in line.split() if w.split(":")[0] in ("REG", "STACK", "SHARED", "LOCAL"))


def jit_signature(fn, args: tuple, constexprs: dict) -> tuple[dict, dict, dict]:
    """(signature, constexprs, attrs) of `fn` for these call arguments, specialized as Triton's JIT specializes a
    launch: an integer equal to 1 becomes the constant 1, an integer or a tensor's address divisible by 16 gets
    `tt.divisibility` 16 (what lets the compiler issue 16-byte loads), other integers are i32 (i64 past 2^31)."""
    names = [n for n in inspect.signature(fn.fn).parameters if n not in constexprs]
    if len(names) != len(args):
        raise ValueError(f"{fn.fn.__name__} takes {len(names)} runtime arguments, got {len(args)}")
    sig, consts, attrs = {}, dict(constexprs), {}
    all_names = list(inspect.signature(fn.fn).parameters)
    for name, value in zip(names, args):
        if hasattr(value, "data_ptr"):
            sig[name] = "*" + TORCH_TYPES[str(value.dtype)]
            divisible = value.data_ptr() % 16 == 0
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"argument {name!r}: a tensor, int or float expected, got {type(value).__name__}")
        elif isinstance(value, float):
            sig[name], divisible = "fp32", False
        elif value == 1:
            consts[name] = 1
            continue
        else:
            sig[name] = "i32" if -2 ** 31 <= value < 2 ** 31 else "i64"
            divisible = value % 16 == 0
        if divisible:
            attrs[(all_names.index(name),)] = [["tt.divisibility", 16]]
    for name in consts:
        sig[name] = "constexpr"
    sig = {n: sig[n] for n in all_names}
    return sig, consts, attrs


def build_like_jit(fn, args: tuple, constexprs: dict, num_warps: int, num_stages: int = 3, **options):
    """The sm_90 kernel Triton's JIT would build for `fn[grid](*args, **constexprs, num_warps=..., num_stages=...)`
    (jit_signature; 3 stages is Triton's default on Hopper); `options` are further launch options (`maxnreg`)."""
    sig, consts, attrs = jit_signature(fn, args, constexprs)
    names = list(inspect.signature(fn.fn).parameters)
    src = ASTSource(fn, sig, constexprs={(names.index(n),): v for n, v in consts.items()}, attrs=attrs)
    return triton.compile(src, target=TARGET, options={"num_warps": num_warps, "num_stages": num_stages, **options})


TORCH_TYPES = {"torch.float32": "fp32", "torch.float16": "fp16", "torch.bfloat16": "bf16", "torch.int32": "i32",
               "torch.int64": "i64", "torch.float64": "fp64", "torch.int8": "i8", "torch.uint8": "u8"}


def tiles_cases() -> list[tuple[str, object, dict]]:
    """The token-major kernels at small blocks (the build's time grows with them; the branches and loops are those
    of the GPU defaults): the fused pass uniform and varlen, and the spectrum merge."""
    import triton.language as tl

    from optimized.triton_fourier_tiles import KERNELS
    fused = dict(G=2, LQ=1, D=16, DT=tl.bfloat16, BT_DT=tl.bfloat16, PREC=None, CPREC=None, BLOCK_M=16, BLOCK_R=2,
                 BLOCK_D=16, BLOCK_T=16, RANGE_T=8, BLOCK_N=16, BLOCK_KD=16, BLOCK_VD=16, NVP=16, ALIGN=1,
                 FAST_TRIG=True, EMUL_BF16=False)
    merge = dict(G=2, LQ=1, D=16, VARLEN=True, BLOCK_M=16, BLOCK_R=2, BLOCK_D=16, BLOCK_N=16, NVP=16, BLOCK_S=16,
                 BLOCK_SO=8, CPREC="tf32x3", FOLD=True)
    return [("fused", KERNELS["fused"], {**fused, "VARLEN": False}),
            ("fused varlen", KERNELS["fused"], {**fused, "VARLEN": True}),
            ("spectrum merge", KERNELS["spectrum merge"], merge)]


def lowrank_cases() -> list[tuple[str, object, dict]]:
    """The low-rank kernel's stream (`_middle_kernel`, uniform and varlen, bfloat16 rank-r operands and two V
    slices' worth of masks) at small blocks, the prologue, merge and output with the coefficient folds (TF32), and
    the output without them as batch 2 and up take it (V sums from the planes in its launch: v_gemm, vo_fused)."""
    import triton.language as tl

    from optimized.triton_fourier_lowrank import KERNELS
    middle = dict(GL=4, BLOCK_R=16, BLOCK_M=16, KWP=64, CHUNK=32, BLOCK_VC=32, BLOCK_VD=16, BLOCK_T=16, BB=32, PK=32,
                  PV=32, HAS_S=True, HAS_H=True, DT=tl.bfloat16, BDT=tl.bfloat16, PREC=None, CPREC=None,
                  EMUL_BF16=False, A_SPLIT=True, ALIGN=8, H16=False, HDT=tl.bfloat16, HPREC=None)
    fold = dict(FOLD=True, FDT=tl.float32, F_PREC="tf32", F_EMUL_BF16=False, F_EMUL_TF32=False, PDL=False)
    prologue = dict(G=4, LQ=1, D=64, VARLEN=False, BLOCK_M=16, DC=32, BLOCK_N=64, QP_PREC="tf32", EMUL_TF32=False,
                    DT=tl.bfloat16, E_PREC=None, BLOCK_D=64, BLOCK_T=32, KWP=64, BLOCK_R=16, CHUNK=32, ALIGN=8,
                    ROWS=True, **fold)
    merge = dict(GL=4, BLOCK_M=16, BLOCK_SE=4, STEPS_E=1, BLOCK_SM=16, STEPS_M=2, BLOCK_B=4, PV=32, HAS_H=True, D=64,
                 BLOCK_CV=32, **fold)
    output = dict(G=4, LQ=1, VARLEN=True, BLOCK_M=16, BLOCK_D=64, BLOCK_VD=16, BLOCK_CV=32, RB=4, BLOCK_K=16,
                  BLOCK_C=32, BLOCK_SE=4, STEPS_E=1, BLOCK_SM=16, STEPS_M=2, BLOCK_P=16, STEPS_P=1, PDL=False)
    unfolded = dict(G=4, LQ=1, D=64, VARLEN=False, BLOCK_M=16, BLOCK_D=64, BLOCK_DO=16, BLOCK_N=16, BLOCK_VD=16,
                    BLOCK_SE=4, STEPS_E=1, BLOCK_SM=16, STEPS_M=2, CPREC="tf32x3", PARTS=0, V_GEMM=True, VO=True,
                    BLOCK_C=32, BLOCK_NS=64, VPREC="tf32", EMUL_TF32=False, PDL=False)
    return [("low-rank stream", KERNELS["stream"], {**middle, "VARLEN": False, "PDL": False}),
            ("low-rank stream varlen", KERNELS["stream"], {**middle, "VARLEN": True, "PDL": False}),
            ("low-rank prologue, folds", KERNELS["prologue"], prologue),
            ("low-rank merge, folds", KERNELS["merge"], merge),
            ("low-rank output, folds", KERNELS["fold output"], output),
            ("low-rank output", KERNELS["output"], unfolded)]


def main() -> int:
    """Build every case of `tiles_cases` and `lowrank_cases` with int32 arguments and with the constant ones; one
    line each, exit 1 on the first refusal. Run without TRITON_INTERPRET (the interpreter's kernels cannot be
    compiled)."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("python -m optimized.sm90_build builds real kernels: run it without TRITON_INTERPRET=1")
    for name, fn, consts in tiles_cases() + lowrank_cases():
        for ones in (False, True):
            kernel = build_sm90(fn, consts, "bf16", 4, ints_as_one=ones)
            print(f"{name}, {'integer arguments 1' if ones else 'int32 arguments'}: {resources(kernel)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

