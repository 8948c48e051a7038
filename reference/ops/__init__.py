"""Ops that kernels conform to, one file each; importing this package registers their specs."""
from reference.ops import attention, decode_attention, fourier, fourier_update, fourier_varlen  # noqa: F401,E401
from reference.ops import fourier_coefficients, sparse_block_attention, sparse_dllm_saliency  # noqa: F401,E401
