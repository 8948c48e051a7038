"""Score-offset families for the ops with an online softmax: every score of a row far below zero, or far above it.

An online softmax (Milakov & Gimelshein, 2018) keeps a running max m of the scores it has seen and sums
exp(s - m). A kernel that starts m at 0 instead of -inf computes the same result whenever some score of the row is
near or above 0, and 0 / 0 when every score sits far below 0 (each exp underflows); one that skips subtracting the
max is right for scores near 0 and overflows when they all sit far above it. Random normal inputs reach neither, so
the attention-like ops draw a case key `score_offset`: None (plain random inputs), "below" or "above". With an
offset, channel 0 of every query holds `a` and channel 0 of every key `b`, a * b * scale = -OFFSET or +OFFSET,
so every score q . k * scale of the case is the random part over the other channels plus that common offset.

Exactness: a and b are integers and, in an offset case, every other query and key value is a multiple of 1/64
(`quantize`), so each product is a multiple of 2**-12 and every partial sum of a dot product, below 2**12 in
magnitude, is exact in float32: the large term adds no rounding whatever order a kernel sums in, and the only
float32 error left is the score's own rounding (ulp(128) = 1.5e-5 at most, OFFSET keeps |scores| below 128).

FourierAttention caches take one more kind, "needle" (`offset_fourier_cache`; explicit examples only, never drawn):
every query's attention on one middle token. Averaged over the tokens, an error of the middle's reconstruction
that changes sign from token to token (a basis a few ulps off at some phases) falls below the rule's bound; with
the softmax on one token the output is that token's rebuilt V row, error and all.
"""
from __future__ import annotations

import math

SCORE_OFFSETS = (None, "below", "above")
NEEDLE = "needle"  # FourierAttention caches only (offset_fourier_cache), in explicit examples
OFFSET = 112.0  # exp(-112) underflows float32 to 0 (exp(-104) does) and exp(112) overflows it (exp(89) does)
GRID = 64  # offset cases round the other query and key values to multiples of 1 / GRID


def offset_channel(kind: str | None, head_dim: int, scale: float | None) -> tuple[float, float] | None:
    """(a, b): the values of channel 0 of the queries and of the keys that put every score `OFFSET` below ("below")
    or above ("above") its random part; None for kind None. scale: the softmax scale (None: head_dim ** -0.5)."""
    if kind is None:
        return None
    if kind not in SCORE_OFFSETS:
        raise ValueError(f"score_offset must be one of {SCORE_OFFSETS}, got {kind!r}")
    scale = head_dim ** -0.5 if scale is None else scale
    a = float(round(math.sqrt(OFFSET / scale)))  # an integer, exact in every dtype up to 256 (bfloat16)
    return a, (a if kind == "above" else -a)


def quantize(t):
    """`t` rounded to multiples of 1 / GRID (module docstring, "Exactness"), in place, returned."""
    return t.mul_(GRID).round_().div_(GRID)


def score_offsets(st):
    """The strategy of the case key: mostly None, an offset one draw in three."""
    return st.sampled_from((None, None, None, None, "below", "above"))


def offset_fourier_cache(inputs: dict, kind: str | None) -> dict:
    """Apply the offset (or the needle: `needle_fourier_cache`) to a FourierAttention cache (reference/ops/fourier.py
    layout, or its padded varlen form), in place, and return it:
    channel 0 of q and of k_exact, and channel h * D of the middle (dim 0 of each KV head) as a kept channel
    (k_mid_kept) or a compressed one (coefficients 0 and moment-matching shift b, so it reconstructs to b)."""
    if kind == NEEDLE:
        return needle_fourier_cache(inputs)
    q = inputs["q"]
    ab = offset_channel(kind, q.shape[-1], inputs.get("scale"))
    if ab is None:
        return inputs
    a, b = ab
    d = q.shape[-1]
    for name in ("q", "k_exact", "k_mid_kept", "k_shift"):  # the shift too: a kernel may sum q . shift on its own
        quantize(inputs[name])
    q[..., 0] = a
    inputs["k_exact"][..., 0] = b
    kept, comp = inputs["k_kept_idx"].tolist(), inputs["k_comp_idx"].tolist()
    for c in range(0, inputs["k_exact"].shape[1] * d, d):
        if c in kept:
            inputs["k_mid_kept"][..., kept.index(c)] = b
        else:
            j = comp.index(c)
            inputs["k_cos"][:, j], inputs["k_sin"][:, j], inputs["k_shift"][:, j] = 0.0, 0.0, b
    return inputs


def needle_token(mid_len: int) -> int:
    """The middle token (span phase t, 0-based) that a "needle" case puts all attention on: the span's centre."""
    return mid_len // 2


def needle_fourier_cache(inputs: dict) -> dict:
    """Put every query's attention on middle token `needle_token(mid_len)` of its sequence, in place; return inputs.

    Per KV head, through its first kept K channel c (dimension j of the head): the queries of the head's group hold
    a in dimension j, and channel c of the keys holds +a at the needle and -a at every other token, exact and
    middle, of each sequence (a * a * scale = OFFSET, `offset_channel`): the needle scores its random part plus
    OFFSET, every other token its random part minus OFFSET, and e^(-2 OFFSET) is below float32's range, so the
    output is the needle's V row. A head with no kept K channel keeps its random scores. In the padded varlen
    layout only positions inside each sequence's lengths change (the padding past them stays as it was).
    """
    q, k_exact, k_mid = inputs["q"], inputs["k_exact"], inputs["k_mid_kept"]
    b, hkv, d = q.shape[0], k_exact.shape[1], q.shape[-1]
    group = q.shape[1] // hkv
    a, _ = offset_channel("above", d, inputs.get("scale"))
    varlen = "mid_lens" in inputs
    mids = inputs["mid_lens"].tolist() if varlen else [inputs["mid_len"]] * b
    exact = inputs["exact_lens"].tolist() if varlen else [k_exact.shape[2]] * b
    kept = inputs["k_kept_idx"].tolist()
    for h in range(hkv):
        mine = [i for i, c in enumerate(kept) if c // d == h]
        if not mine:
            continue
        i, j = mine[0], kept[mine[0]] - h * d
        q[:, h * group:(h + 1) * group, :, j] = a
        for s, (m, e) in enumerate(zip(mids, exact)):
            k_exact[s, h, :e, j] = -a
            k_mid[s, :m, i] = -a
            k_mid[s, needle_token(m), i] = a
    return inputs
