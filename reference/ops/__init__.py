"""Ops that kernels conform to, one file each; importing this package registers their specs."""
from reference.ops import attention, fourier  # noqa: F401,E401
