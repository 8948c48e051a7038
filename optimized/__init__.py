"""Implementations registered against the reference ops, one file each, with `@register_impl(op, name)`.

Every module of this package (and of reference/ops) is imported the first time an op or implementation is looked
up (reference/registry.py), so a new kernel is one new file. `torch_*` files are float32 PyTorch implementations;
Triton kernels (`triton_*`) register the same way.
"""
