"""Implementations registered against the reference ops; importing this package registers them all.

`torch_*` files are float32 PyTorch implementations that exercise the conformance machinery; Triton kernels
(`triton_*`) register here the same way.
"""
from optimized import torch_attention, torch_fourier, triton_decode_attention, triton_fourier  # noqa: F401,E401
from optimized import triton_fourier_spectral  # noqa: F401,E401
from optimized import triton_sparse_block_attention, triton_sparse_dllm_saliency  # noqa: F401,E401
