"""Provenance stamped on every record: library versions, git sha, device, time."""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=1)
def versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("torch", "triton", "transformers", "gguf", "longctx-bench"):
        try:
            out[dist.replace("-", "_")] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist.replace("-", "_")] = None
    return out


def git_sha(repo_dir: str | Path | None = None) -> str:
    """HEAD's sha, with "-dirty" when tracked code has uncommitted changes; "unknown" outside git.

    Measurements (`results/`) and the pages built from them (`leaderboard/`) do not count: a sweep appending to
    the committed records would otherwise stamp its own records dirty. `LONGCTX_GIT_SHA` overrides it for copies of
    the tree whose .git does not describe them."""
    if repo_dir is None and os.environ.get("LONGCTX_GIT_SHA"):
        return os.environ["LONGCTX_GIT_SHA"]  # copies whose .git is not the tree's (e.g. a lent GPU box) say it
    cwd = str(repo_dir or REPO)
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)results", ":(exclude)leaderboard"], cwd=cwd,
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


_VOLATILE = re.compile(r", \d+ threads?, \d+ cores?$")


def device_kind(device: str) -> str:
    """The stable identity of a device, from a record's `device` field (`device_info`'s string): the kind of
    device, "cuda: NVIDIA H100 80GB HBM3" or "cpu: <model>", without what varies between runs on the same hardware
    (the thread count torch uses, the cores a container sees). Idempotent: a kind is its own kind."""
    if not isinstance(device, str) or not device.strip():
        raise ValueError(f"device must be a non-empty string (a record's `device` field), got {device!r}")
    return _VOLATILE.sub("", device.strip())


def device_info(device: str = "cpu") -> str:
    """`cuda: <GPU name>` or `cpu: <model>, N threads, M cores`; `device_kind` drops the last two."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(torch.device(device))}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {cpu}, {torch.get_num_threads()} threads, {os.cpu_count()} cores"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
