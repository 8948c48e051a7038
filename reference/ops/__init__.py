"""Ops that kernels conform to, one file each; importing this package registers their specs."""
