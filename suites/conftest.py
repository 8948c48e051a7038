"""Shared pytest configuration: hypothesis profiles and the `--impl` option of the conformance suite.

Profiles (DESIGN.md, "Test tiers"): `ci` (default; few examples, no deadline: CPU and the Triton interpreter),
`dev` (more), `gpu` (many, for `pytest -m gpu` on a GPU runner). Choose with HYPOTHESIS_PROFILE=<name>.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_COMMON = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=10, **_COMMON)
settings.register_profile("dev", max_examples=50, **_COMMON)
settings.register_profile("gpu", max_examples=200, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser):
    parser.addoption("--impl", action="append", default=[], help="check a user function package.module:function against an op")
    parser.addoption("--op", default=None, help="the op that --impl implements (default: every op whose signature it accepts)")
    parser.addoption("--profile", default=None, help="conformance input profile: ci (small shapes) or gpu (LLaMA-3-8B shapes)")
