"""Ops that kernels conform to, one file each (`register_op(OpSpec(...))`); every module of this package is imported
the first time an op is looked up (reference/registry.py)."""
