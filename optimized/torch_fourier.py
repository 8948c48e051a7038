"""FourierAttention ops through torch.fft in float32: a second, independent formulation for conformance.

The reference (reference/ops/fourier.py) multiplies by a cos/sin table; here compression reads the FFT of the
zero-padded span (c_cos[n] = Re X[n mod T], c_sin[n] = -Im X[n mod T]) and reconstruction places the weighted
spectrum in an FFT buffer and inverts it, so the two share no arithmetic. Everything accumulates in float32 and
the result is rounded to the inputs' dtype. Same contracts and signatures as the reference.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reference.ops.attention import causal_mask
from reference.ops.checks import check_out
from reference.ops.fourier import check_compress_inputs, check_decode_inputs, check_reconstruct_inputs, dft_weights
from reference.registry import register_impl


@register_impl("fourier_compress", "torch")
def fourier_compress_fft(x, num_freqs, period):
    check_compress_inputs(x, num_freqs, period)
    if x.shape[0] == 0 or x.shape[2] == 0:  # no batch or no channel: nothing to transform (MKL refuses empty FFTs)
        empty = x.new_empty(x.shape[0], x.shape[2], num_freqs)
        return empty, empty.clone()
    spectrum = torch.fft.fft(x.float(), n=period, dim=1)  # [B, T, C]
    sel = spectrum[:, torch.arange(num_freqs, device=x.device) % period].transpose(1, 2)  # [B, C, N]
    return sel.real.to(x.dtype), (-sel.imag).to(x.dtype)


def _reconstruct32(c_cos, c_sin, length, period):
    """[B, C, N] coefficients -> float32 [B, length, C]; weights of frequencies past T/2 are 0 (aliases)."""
    b, c, n = c_cos.shape
    if b == 0 or c == 0:  # no batch or no channel: nothing to transform (MKL refuses empty FFTs)
        return torch.zeros(b, length, c, dtype=torch.float32, device=c_cos.device)
    w = dft_weights(n, period, torch.float32, c_cos.device)
    spectrum = torch.zeros(b, c, period, dtype=torch.complex64, device=c_cos.device)
    spectrum.index_add_(2, torch.arange(n, device=c_cos.device) % period, torch.complex(c_cos.float() * w, -c_sin.float() * w))
    x = torch.fft.ifft(spectrum, dim=2).real * period  # sum_n z_n e^{+2 pi i n t / T}, real part
    return x[:, :, :length].transpose(1, 2)


@register_impl("fourier_reconstruct", "torch")
def fourier_reconstruct_fft(c_cos, c_sin, length, period, out=None):
    check_reconstruct_inputs(c_cos, c_sin, length, period)
    check_out(out, (c_cos.shape[0], length, c_cos.shape[1]), c_cos.dtype, c_cos.device)
    result = _reconstruct32(c_cos, c_sin, length, period).to(c_cos.dtype)
    return result if out is None else out.copy_(result)


def _assemble32(exact, n_init, mid_kept, kept_idx, comp_idx, c_cos, c_sin, scale, shift, mid_len, period):
    b, h, _, d = exact.shape
    mid = torch.zeros(b, mid_len, h * d, dtype=torch.float32, device=exact.device)
    mid.index_copy_(2, kept_idx, mid_kept.float())
    if comp_idx.numel():
        rec = _reconstruct32(c_cos, c_sin, mid_len, period) * scale.float()[:, None] + shift.float()[:, None]
        mid.index_copy_(2, comp_idx, rec)
    mid = mid.view(b, mid_len, h, d).permute(0, 2, 1, 3)
    e = exact.float()
    return torch.cat([e[:, :, :n_init], mid, e[:, :, n_init:]], dim=2)


@register_impl("fourier_decode_attention", "torch", bench=False)  # float32 formulation: not benchmarked
def fourier_decode_attention_torch(
    q, k_exact, v_exact, n_init,
    k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift,
    v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift,
    mid_len, period, scale=None, out=None,
):
    check_decode_inputs(q, k_exact, v_exact, n_init, k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift,
                        v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift, mid_len, period, scale)
    check_out(out, q.shape, q.dtype, q.device)
    k = _assemble32(k_exact, n_init, k_mid_kept, k_kept_idx, k_comp_idx, k_cos, k_sin, k_scale, k_shift, mid_len, period)
    v = _assemble32(v_exact, n_init, v_mid_kept, v_kept_idx, v_comp_idx, v_cos, v_sin, v_scale, v_shift, mid_len, period)
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    mask = causal_mask(q.shape[2], k.shape[2], q.device)
    result = F.scaled_dot_product_attention(q.float(), k, v, attn_mask=mask, scale=scale).to(q.dtype)
    return result if out is None else out.copy_(result)
