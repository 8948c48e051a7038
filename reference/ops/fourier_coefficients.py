"""FourierAttention decode in coefficient space: the same function as `fourier_decode_attention`, no channel rebuilt.

FourierAttention (Liu et al., arXiv 2506.11886, sec. 3; docs/fourier-attention.md) stores a compressed channel c of
the middle span as coefficients (a_cn, b_cn), n < N, with moment matching x'_c(t) = s_c x_hat_c(t) + mu_c and

    x_hat_c(t) = sum_n w_n (a_cn cos(w_n t) + b_cn sin(w_n t)),   w_n = 2 pi n / T   (reference/ops/fourier.py)

Both uses of the middle span are linear in x', so the sums over channels and over tokens can be swapped:

    score_t   = sum_{c kept} q_c k_ct + sum_n w_n (u_n cos(w_n t) + u'_n sin(w_n t)) + sum_{c comp} q_c mu_c,
                u_n = sum_{c comp} q_c s_c a_cn,  u'_n = sum_{c comp} q_c s_c b_cn                       (scores)
    out_c     = s_c sum_n w_n (a'_cn P_n + b'_cn P'_n) + mu_c sum_t p_t,
                P_n = sum_t p_t cos(w_n t),  P'_n = sum_t p_t sin(w_n t)                                   (values)

for the compressed K and V channels respectively (p the softmax over the whole cache). A query row costs 2N dot
products of length C_c plus one inverse and one forward length-T FFT, instead of rebuilding C_c x M channel values
from 2N coefficients each: the per-token work depends neither on C_c nor on N. One softmax spans sinks, middle and local
window, as in the reference. Computes in float32 (float64 for float64 inputs) and rounds to q's dtype.

Registered as the `coefficients` implementation of `fourier_decode_attention` and its varlen op; the rebuild-then-
attend reference stays the oracle (suites/methods/test_fourier_coefficients.py checks the two agree in float64).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from reference.ops.checks import check_out
from reference.ops.fourier import check_decode_inputs, dft_weights
from reference.ops.fourier_varlen import check_varlen_inputs
from reference.registry import register_impl


@dataclass(frozen=True)
class CoefficientPlan:
    """What a cache's layout fixes for every decode step (`coefficient_plan`), so a step spends its operations on
    arithmetic: the KV method makes it once per cache, the op on every call.

    q_index: long [Hkv, Ck + Cc]: for the query rows of KV head j, where each K channel of cat(kept, compressed) sits
      in the row's last dimension padded with one zero (index D): its dimension when the channel is head j's, the
      zero otherwise. One gather then gives every row's dot-product operand for the kept and compressed channels.
    k_kept: Ck, the split point of that order.
    own: long [Hkv, D]: where channel h * D + j sits in cat(kept V, compressed V), the order the values come in.
    """

    q_index: torch.Tensor
    k_kept: int
    own: torch.Tensor


def own_head_positions(kept_idx: torch.Tensor, comp_idx: torch.Tensor, hkv: int, d: int) -> torch.Tensor:
    """long [Hkv, D]: where channel h * D + j sits in cat(kept_idx, comp_idx)."""
    order = torch.cat([kept_idx, comp_idx])
    pos = torch.empty_like(order)
    pos[order] = torch.arange(order.numel(), device=order.device)
    return pos.reshape(hkv, d)


def coefficient_plan(k_kept_idx, k_comp_idx, v_kept_idx, v_comp_idx, hkv: int, d: int) -> CoefficientPlan:
    """The plan of a layout whose index lists partition the Hkv * D channels (checked by the op's validation)."""
    order = torch.cat([k_kept_idx, k_comp_idx])
    heads = torch.arange(hkv, device=order.device)[:, None]
    q_index = torch.where(order[None, :] // d == heads, order[None, :] % d, d)
    return CoefficientPlan(q_index, k_kept_idx.numel(), own_head_positions(v_kept_idx, v_comp_idx, hkv, d))


def _kept_freqs(num_freqs: int, period: int) -> int:
    """Frequencies that carry weight: n <= T/2 (the weights past T/2 are 0; those are aliases of lower ones)."""
    return min(num_freqs, period // 2 + 1)


def _weighted(c_cos: torch.Tensor, c_sin: torch.Tensor, period: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The coefficients of the frequencies that carry weight (`_kept_freqs`), sliced only when some do not."""
    n = _kept_freqs(c_cos.shape[2], period)
    return (c_cos, c_sin) if n == c_cos.shape[2] else (c_cos[..., :n], c_sin[..., :n])


def middle_scores(q_k, q_c, mid_kept, c_cos, c_sin, mm_scale, mm_shift, mid_len, period):
    """q . k_t over every channel of the middle span, t = 0..M-1: [B, rows, M] (eq. "scores" above).

    q_k [B, rows, Ck] / q_c [B, rows, Cc]: each query row's values in the kept / compressed K channels (zero in
    another head's). The compressed part is the inverse DFT of the 2N-vector: sum_n w_n (u_n cos(w_n t) + u'_n
    sin(w_n t)) = Re sum_n w_n (u_n - i u'_n) e^{i w_n t}. With the weights of the orthogonal real DFT (1/T at
    n = 0 and T/2, 2/T between) this is exactly a length-T inverse real FFT of (u_n - i u'_n) / T, whose Hermitian
    doubling supplies the 2: O(T log T) per row instead of N x M.
    """
    scores = q_k @ mid_kept.transpose(1, 2)  # [B, rows, M]
    if q_c.shape[-1]:
        c_cos, c_sin = _weighted(c_cos, c_sin, period)
        qs = q_c * (mm_scale / period)[:, None, :]  # the 1/T of the spectrum, folded into the query
        spectrum = torch.complex(qs @ c_cos, (-qs) @ c_sin)
        scores = scores + torch.fft.irfft(spectrum, n=period, norm="forward")[..., :mid_len]
        scores = scores + q_c @ mm_shift[:, :, None]  # sum_c q_c mu_c, the same for every t
    return scores


def middle_values(p, mid_kept, c_cos, c_sin, mm_scale, mm_shift, period):
    """sum_t p_t v_t over every channel of the middle span, p [B, rows, M]: [B, rows, Ck + Cc], the kept channels
    then the compressed ones (`CoefficientPlan.own` picks each head's own) (eq. "values" above).

    The probability spectrum is one real FFT per row: sum_t p_t e^{-i w_n t} = P_n - i P'_n.
    """
    kept = p @ mid_kept
    if not c_cos.shape[1]:
        return kept
    c_cos, c_sin = _weighted(c_cos, c_sin, period)
    w = dft_weights(c_cos.shape[2], period, p.dtype, p.device)
    spectrum = torch.fft.rfft(p, n=period)[..., : c_cos.shape[2]] * w  # [B, rows, n], weighted
    rec = spectrum.real @ c_cos.transpose(1, 2) - spectrum.imag @ c_sin.transpose(1, 2)
    p_sum = p.sum(-1, keepdim=True)
    return torch.cat([kept, torch.addcmul(p_sum * mm_shift[:, None, :], rec, mm_scale[:, None, :])], dim=-1)


def query_operands(q, k_exact, k_args, v_args, scale, plan=None):
    """The start every coefficient-space decode shares: (work dtype, k_args and v_args in it, the layout's plan,
    q_rows [B, Hkv, R, D] with the softmax scale folded in (R = G * Lq rows per KV head, head-major, then token),
    q_sel [B, Hkv * R, Ck + Cc]: each row's values in the kept, then the compressed K channels, zero in another
    head's). `plan` is made here when None."""
    work = torch.promote_types(q.dtype, torch.float32)
    b, hq, lq, d = q.shape
    hkv = k_exact.shape[1]
    k_args = tuple(t.to(work) if t.is_floating_point() else t for t in k_args)
    v_args = tuple(t.to(work) if t.is_floating_point() else t for t in v_args)
    if plan is None:
        plan = coefficient_plan(k_args[1], k_args[2], v_args[1], v_args[2], hkv, d)
    sm_scale = d ** -0.5 if scale is None else float(scale)
    q_rows = (q.to(work) * sm_scale).reshape(b, hkv, (hq // hkv) * lq, d)
    q_pad = torch.nn.functional.pad(q_rows, (0, 1))
    q_sel = torch.gather(q_pad, 3, plan.q_index[None, :, None, :].expand(b, hkv, q_rows.shape[2], -1))
    return work, k_args, v_args, plan, q_rows, q_sel.reshape(b, hkv * q_rows.shape[2], -1)


def exact_scores(q_rows, k_exact, n_init: int, lq: int) -> torch.Tensor:
    """[B, Hkv, R, Le]: the rows' scores of the exact tokens, sinks always visible, the local window bottom-right
    causal to the Lq queries (row r is query token r % Lq)."""
    s = q_rows @ k_exact.to(q_rows.dtype).transpose(-1, -2)
    if lq == 1:
        return s
    le = k_exact.shape[2]
    token = torch.arange(q_rows.shape[2], device=s.device) % lq
    local_pos = torch.arange(le, device=s.device) - n_init
    hidden = (local_pos[None, :] > (le - n_init - lq) + token[:, None]) & (local_pos[None, :] >= 0)
    return s.masked_fill(hidden, float("-inf"))


def _decode(q, k_exact, v_exact, n_init, k_args, v_args, mid_len, period, scale, plan=None):
    """The op on checked inputs (no checks): out [B, Hq, Lq, D] in q's dtype.

    Scores are taken in the order [exact tokens (sinks, local window) | middle span]: the softmax does not depend on
    the order of the keys, and the exact tokens are one tensor in the cache."""
    b, hq, lq, d = q.shape
    hkv, le = k_exact.shape[1], k_exact.shape[2]
    work, k_args, v_args, plan, q_rows, q_sel = query_operands(q, k_exact, k_args, v_args, scale, plan)
    k_mid, _, _, k_cos, k_sin, k_scale, k_shift = k_args
    v_mid, _, _, v_cos, v_sin, v_scale, v_shift = v_args
    rows = q_rows.shape[2]
    s_exact = exact_scores(q_rows, k_exact, n_init, lq)
    s_mid = middle_scores(q_sel[..., : plan.k_kept], q_sel[..., plan.k_kept:], k_mid, k_cos, k_sin, k_scale, k_shift,
                          mid_len, period)

    p = torch.softmax(torch.cat([s_exact.reshape(b, hkv * rows, le), s_mid], dim=-1), dim=-1)
    values = middle_values(p[..., le:], v_mid, v_cos, v_sin, v_scale, v_shift, period)  # [B, Hkv*R, Ck + Cc]
    own = plan.own[None, :, None, :].expand(b, hkv, rows, d)
    out = torch.gather(values.reshape(b, hkv, rows, -1), 3, own)
    out = out + p[..., :le].reshape(b, hkv, rows, le) @ v_exact.to(work)
    return out.reshape(b, hq, lq, d).to(q.dtype)


@register_impl("fourier_decode_attention", "coefficients", bench=False)  # a formulation: not benchmarked
def fourier_decode_attention_coefficients(
    q, k_exact, v_exact, n_init,
    k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift,
    v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift,
    mid_len, period, scale=None, out=None, validate=True, plan=None,
):
    """Same contract as reference.ops.fourier.fourier_decode_attention, computed in coefficient space.

    validate=False skips the layout checks (index partitions, shapes, NaN scan): for a caller that built the layout
    itself and checked it once, like the `fourier` KV method decoding every layer at every step. plan: the layout's
    `coefficient_plan`, made once by such a caller (None: made here)."""
    if validate:
        check_decode_inputs(q, k_exact, v_exact, n_init, k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale,
                            k_shift, v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift, mid_len,
                            period, scale)
    check_out(out, q.shape, q.dtype, q.device)
    result = _decode(q, k_exact, v_exact, n_init,
                     (k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift),
                     (v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift), mid_len, period, scale,
                     plan)
    return result if out is None else out.copy_(result)


@register_impl("fourier_decode_attention_varlen", "coefficients")
def fourier_decode_attention_varlen_coefficients(
    q, k_exact, v_exact, exact_lens, n_init,
    k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift,
    v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift,
    mid_lens, periods, scale=None, out=None,
):
    """Same contract as reference.ops.fourier_varlen.fourier_decode_attention_varlen: each sequence of the batch
    decoded in coefficient space over its own unpadded cache."""
    check_varlen_inputs(q, k_exact, v_exact, exact_lens, n_init, k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin,
                        k_scale, k_shift, v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift,
                        mid_lens, periods, scale)
    check_out(out, q.shape, q.dtype, q.device)
    rows = []
    for i in range(q.shape[0]):
        e, m, s = int(exact_lens[i]), int(mid_lens[i]), slice(i, i + 1)
        rows.append(_decode(q[s], k_exact[s, :, :e], v_exact[s, :, :e], n_init,
                            (k_mid_kept[s, :m], k_kept_idx, k_comp_idx, k_cos[s], k_sin[s], k_scale[s], k_shift[s]),
                            (v_mid_kept[s, :m], v_kept_idx, v_comp_idx, v_cos[s], v_sin[s], v_scale[s], v_shift[s]),
                            m, int(periods[i]), scale))
    result = torch.cat(rows, dim=0)
    return result if out is None else out.copy_(result)
