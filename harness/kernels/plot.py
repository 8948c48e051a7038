"""The kernels' key plot: decode latency vs context, log-log, one panel per (shape, batch), one line per kernel, and
the copy-bandwidth roofline of each cache the kernels read (the time the cache's bytes take at the device-to-device
copy bandwidth measured in the same run: no memory-bound kernel can be faster). Used by harness/kernels/board.py
(every panel) and the headline (one shape)."""
from __future__ import annotations

from harness.boards.page import fig_png, plt

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
ROOF_STYLES = {"full": ("black", "--"), "fourier": ("0.45", ":")}


def kernel_label(r: dict) -> str:
    """A kernels_bench record's kernel: "op / impl"."""
    return f"{r['task']} / {r['impl']}"


def roofline_ms(cell: dict) -> float | None:
    """The least time the cell's bytes take at the run's copy bandwidth, in ms; None without both."""
    nbytes, gbs = cell["metrics"].get("bytes_read"), cell["extra"].get("copy_bandwidth_gbs")
    return 1e3 * nbytes / (gbs * 1e9) if nbytes and gbs else None


def latency_figure(cells: list[dict], title: str, shapes: list[str] | None = None) -> bytes:
    """cells: merged bench cells ({"record", "metrics", "extra"}) of one dtype and device; rows of panels are the
    shapes (all, or `shapes`), columns the batches."""
    measured = [c for c in cells if "latency_ms" in c["metrics"]
                and (shapes is None or c["record"]["model"] in shapes)]
    shape_list = sorted({c["record"]["model"] for c in measured})
    batches = sorted({c["record"]["params"]["batch"] for c in measured})
    fig, axes = plt.subplots(len(shape_list), len(batches), squeeze=False, layout="constrained",
                             figsize=(min(12.4, 3.1 * len(batches) + 0.3), 2.7 * len(shape_list) + 0.7))
    kernels = sorted({kernel_label(c["record"]) for c in measured})
    color = {k: COLORS[i % len(COLORS)] for i, k in enumerate(kernels)}
    for row, shape in enumerate(shape_list):
        for col, batch in enumerate(batches):
            ax = axes[row][col]
            here = [c for c in measured if c["record"]["model"] == shape and c["record"]["params"]["batch"] == batch]
            for k in kernels:
                pts = sorted((c["record"]["params"]["context"], c["metrics"]["latency_ms"]) for c in here
                             if kernel_label(c["record"]) == k)
                if pts:
                    ax.plot(*zip(*pts), marker="o", ms=3.5, color=color[k], label=k)
            for method, (c_, ls) in ROOF_STYLES.items():
                roof = {}
                for c in here:
                    if c["record"]["method"] == method and (ms := roofline_ms(c)) is not None:
                        roof[c["record"]["params"]["context"]] = min(ms, roof.get(c["record"]["params"]["context"], ms))
                if roof:
                    ax.plot(*zip(*sorted(roof.items())), ls=ls, color=c_, lw=1.2,
                            label=f"copy-bandwidth roofline, {method} cache")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{shape}, batch {batch}", fontsize=9)
            ax.set_xlabel("context (tokens)", fontsize=8)
            ax.set_ylabel("latency (ms)", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3, which="both")
    handles = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=10)
    return fig_png(fig)
