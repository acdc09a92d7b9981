"""PNG plots of saved results (the optional `pdl[plot]` extra): speedup against workers or batch size."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from ..bench.point import Point
from ..bench.records import ResultSet
from ..errors import MissingDependencyError, ResultsError
from ..loaders import BASELINE
from ..stats.rounds import ideal_speedup
from .history import History


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("--plot needs matplotlib: pip install 'pdl[plot]'") from None
    return plt


def plot_history(h: History, path: Path) -> None:
    """Each configuration's images/s over the runs (bars: slowest–fastest round); a triangle where it changed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5), dpi=120)
    xs = list(range(1, len(h.runs) + 1))
    for t in h.trends:
        pts = [(x, v, lo or v, hi or v) for x, v, lo, hi in zip(xs, t.values, t.lows, t.highs, strict=True) if v is not None]
        if not pts:
            continue
        line = ax.errorbar(
            [p[0] for p in pts], [p[1] for p in pts], yerr=[[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]],
            marker="o", markersize=4, capsize=2, label=t.label,
        )  # fmt: skip
        for i, said in enumerate(t.busy):  # a busy run: drawn, ringed, never judged
            if said and t.values[i] is not None:
                ax.plot(i + 1, t.values[i], "o", markersize=11, fillstyle="none", color="grey")
        for c in t.changes:
            ax.plot(c.run + 1, t.values[c.run], "v" if c.change < 0 else "^", markersize=13, color=line[0].get_color())
            ax.annotate(
                f"{c.change:+.0%}", (c.run + 1, t.values[c.run] or 0), textcoords="offset points", xytext=(8, 6), fontsize=8
            )
    ax.set_xticks(xs, [r.label.split(" · ")[-1] for r in h.runs], rotation=30, ha="right", fontsize=7)
    unit = "images/s at the first run's machine speed" if h.corrected else "images/s (raw)"
    ax.set_ylabel(f"{unit}\n(median round; bars: slowest–fastest)")
    ax.set_title(
        f"history: {len(h.runs)} runs · ▼▲ first run of a significant change · ○ busy machine: not judged\n{h.runs[-1].results.machine.summary()}",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot(results: ResultSet, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    pts = [p for p in results.points if p.loader != BASELINE]
    if results.kind == "sweep-batch":
        _by(ax, pts, "batch_size")
        ax.set_xscale("log")
        ax.set_xlabel("batch size (images)")
        title = f"speedup by batch size · {pts[0].pipeline} · {pts[0].workers} workers" if pts else ""
    elif results.kind == "sweep-workers":
        _by(ax, pts, "workers")
        usable = results.machine.cpu.usable
        counts = sorted({p.workers for p in pts})
        ax.plot(counts, [ideal_speedup(w, usable) for w in counts], "k--", label=f"ideal: min(workers, {usable} cores)")
        ax.axvline(usable, color="grey", linestyle=":", label=f"usable cores = {usable}")
        ax.set_xlabel("workers")
        ax.set_xticks(counts)
        title = "speedup by workers"
    else:
        raise ResultsError(f"--plot draws sweeps; '{results.kind}' results have a single point per loader")
    ax.axhline(1.0, color="lightgrey", linewidth=1)
    ax.set_ylabel("speedup over sequential (×, median of rounds; bars: min–max)")
    ax.set_title(f"{title}\n{results.machine.summary()}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _by(ax: Any, pts: list[Point], x: Literal["workers", "batch_size"]) -> None:
    lines: dict[str, list[Point]] = {}
    many_loaders = len({q.loader for q in pts}) > 1
    for p in pts:
        label = p.pipeline if x == "workers" else p.loader
        if many_loaders and x == "workers":
            label = f"{p.pipeline} · {p.loader}"
        lines.setdefault(label, []).append(p)
    for label, group in lines.items():
        group.sort(key=lambda p: p.workers if x == "workers" else p.batch_size)
        xs = [p.workers if x == "workers" else p.batch_size for p in group]
        ys = [p.speedup for p in group]
        err = [[p.speedup - p.speedup_min for p in group], [p.speedup_max - p.speedup for p in group]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label)
