"""Which window of the kept K and V lists a row block of the low-rank stream reads, and its query laid over it.

A program of the stream takes BLOCK_R consecutive query rows of one sequence (rows of one KV head are GL
consecutive rows), so it reads the kept channels of a few KV heads: their runs of the sorted kept list, one window.
`heads_window` finds it; `query_rows` writes the rows' query at the window's kept K channels (zero at a neighbour
head's), so Q_bd @ K^T gives every row its own head's score.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def heads_window(START, row0, n_rows, width, GL: tl.constexpr, BLOCK_R: tl.constexpr, ALIGN: tl.constexpr):
    """The kept-list window of the KV heads of query rows row0 .. row0 + BLOCK_R (rows of one head are GL
    consecutive rows): (its start, rounded down to ALIGN, and its width, to the last head's run end rounded up but
    never past the list's `width` channels: the row's padding beyond them may hold anything). Lanes in it outside a
    row's own head get zero query lanes (QBD) and are never stored (`_middle_kernel`)."""
    h0 = row0 // GL
    h1 = (tl.minimum(row0 + BLOCK_R, n_rows) - 1) // GL
    start = tl.multiple_of(tl.load(START + h0) // ALIGN * ALIGN, ALIGN)
    end = (tl.load(START + h1 + 1) + ALIGN - 1) // ALIGN * ALIGN
    return start, tl.minimum(end - start, width - start)


@triton.jit
def query_rows(Q, KKEPT, KSTART, QBD, sqb, sqh, sql, sqd, n_rows, k_width, b, rb, chunk, G: tl.constexpr,
               LQ: tl.constexpr, D: tl.constexpr, KWP: tl.constexpr, BLOCK_R: tl.constexpr, CHUNK: tl.constexpr,
               ALIGN: tl.constexpr):
    """QBD[b, r, c] = q[b, r] at the dimension of kept K channel ks + c when it belongs to row r's KV head, else 0,
    for the rows of row block rb, where [ks, ks + KWP) is the block's window of the kept list (`heads_window`), CHUNK
    channels from chunk * CHUNK (a loop over the chunks left 16 programs at 8 x 32k, 6.5 us of load latency)."""
    rows = rb * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < n_rows
    hq = rows // LQ
    ks, kw = heads_window(KSTART, rb * BLOCK_R, n_rows, k_width, G * LQ, BLOCK_R, ALIGN)
    cs = chunk * CHUNK + tl.arange(0, CHUNK)
    chan = tl.load(KKEPT + ks + cs, mask=cs < kw, other=-1)
    own = (chan[None, :] >= 0) & (chan[None, :] // D == (hq // G)[:, None]) & row_ok[:, None]
    q = tl.load(Q + b * sqb + hq[:, None] * sqh + (rows % LQ)[:, None] * sql + (chan % D)[None, :] * sqd,
                mask=own, other=0.0)
    tl.store(QBD + (b * n_rows + rows)[:, None] * KWP + cs[None, :], q, mask=row_ok[:, None])
