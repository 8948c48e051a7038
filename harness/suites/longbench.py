"""`run --suite longbench`: harness/kv/run_tasks.py from the command line (same flow as niah: --model, --methods, ...)."""
from __future__ import annotations

from harness.suite import SUITES
from harness.suites.common import TaskRun


@SUITES.register("longbench")
class LongBench(TaskRun):
    order = 2
