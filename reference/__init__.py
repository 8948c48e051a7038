"""Ground truth: pure-PyTorch references of every op and method (docs/design.md)."""
