"""Fitting the token-major kernel's tile setting to a GPU's shared memory and a call's query rows.

The fused pass of `optimized/triton_fourier_tiles.py` holds, per program, operands of [rows x RANGE_T, BLOCK_T]
(the (query row, tile) pairs times the tile's tokens) in shared memory, once per software-pipelining stage. The
tuning table (`optimized/tiles_tuning.json`) was measured at LLaMA-3-8B's 4 query rows per KV head; a call with more
rows (a larger group, or several query tokens) that took the tuned range unchanged asked for up to 8x the pairs.
Built offline for sm_90 at 32 rows (Triton 3.9), the H100's 1 x 32k entry (128-token tiles, 32-tile ranges, 3
stages) needs 1.1 MB of shared memory in float32, against the 227 KB a program can have: the launch is refused.

Two rules keep every call launchable:
- `tuned_range(range_t, rows)`: for more rows than tuned, a tuned range is shortened to keep the tuned number of
  (row, tile) pairs;
- `fit_setting`: before the first launch, a setting whose build needs more shared memory than the GPU allows steps
  down, pipelining depth first (it changes no work), then the range, then the tile width. A setting the caller
  chose is never changed: it is refused with the numbers.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

TUNED_ROWS = 4  # query rows per KV head of the tuning sweep's shapes (LLaMA-3-8B: group 4, one query token)
MIN_PAIRS = 16  # (row, tile) pairs a basis product needs (the tensor cores' smallest M)
MIN_BLOCK_T = 16


class Setting(NamedTuple):
    block_t: int
    range_t: int
    num_stages: int


def tuned_range(range_t: int, rows: int) -> int:
    """The tuned `range_t` (measured at TUNED_ROWS rows) for a call with `rows` (a power of two) rows: with more
    rows, as many (row, tile) pairs as tuned (fewer tiles); with fewer, as many tiles; at least MIN_PAIRS pairs."""
    return max(1, min(range_t, range_t * TUNED_ROWS // rows), -(-MIN_PAIRS // rows))


def smaller(setting: Setting, rows: int) -> Setting | None:
    """The next setting to try when `setting` does not fit: one stage fewer, else half the range (while the pairs
    stay >= MIN_PAIRS), else half the tile (>= MIN_BLOCK_T); None when none is left."""
    if setting.num_stages > 1:
        return setting._replace(num_stages=setting.num_stages - 1)
    if setting.range_t > 1 and rows * (setting.range_t // 2) >= MIN_PAIRS:
        return setting._replace(range_t=setting.range_t // 2)
    if setting.block_t > MIN_BLOCK_T:
        return setting._replace(block_t=setting.block_t // 2)
    return None


def fit_setting(setting: Setting, rows: int, shared_bytes: Callable[[Setting], int], limit: int,
                chosen: bool = False) -> Setting:
    """The first of `setting`, `smaller(setting)`, ... whose `shared_bytes` (the built kernel's shared memory per
    program) is <= `limit`. chosen: the caller gave the knobs, so a setting over the limit raises instead."""
    tried = setting
    while True:
        need = shared_bytes(tried)
        if need <= limit:
            return tried
        if chosen:
            raise ValueError(f"block_t={tried.block_t}, range_t={tried.range_t}, num_stages={tried.num_stages} with "
                             f"{rows} query rows per KV head need {need} bytes of shared memory per program; this GPU "
                             f"allows {limit}: lower num_stages, range_t or block_t (or pass none of the knobs)")
        nxt = smaller(tried, rows)
        if nxt is None:
            raise ValueError(f"no tile setting fits this GPU's {limit} bytes of shared memory per program with "
                             f"{rows} query rows per KV head; the smallest ({tuple(tried)}) needs {need}")
        tried = nxt
