"""The gate's verdicts and a history's trend as tables."""

from __future__ import annotations

from ..bench.records import ResultSet
from .gate import Gate
from .grid import BUSY, Grid
from .history import History


def verdict_grid(gate: Gate, current: ResultSet) -> Grid:
    """The gate's table: per configuration and measure (images/s, speedup), ok / improved / regressed /
    inconclusive, with baseline, current, the change and the evidence."""
    grid = Grid(
        f"regression gate ({gate.limits.describe()}) · {current.machine.summary()}",
        ["pipeline", "loader", "workers", "batch", "measure", "baseline", "current", "change", "verdict", "evidence"],
    )
    order = {"regressed": 0, "inconclusive": 1, "missing": 2, "improved": 3, "ok": 4, "new": 5}

    def value(v: float | None, measure: str) -> str:
        return "–" if v is None else f"{v:.2f}×" if measure == "speedup" else f"{v:.0f}"

    for v in sorted(gate.verdicts, key=lambda v: (order[v.status], v.key, v.measure)):
        pipeline, loader, workers, batch, _ = v.key
        grid.rows.append([
            str(pipeline), str(loader), str(workers), str(batch), v.measure,
            value(v.baseline, v.measure), value(v.current, v.measure),
            "–" if v.change is None else f"{v.change:+.1%}", v.status.upper() if v.status == "regressed" else v.status, v.reason,
        ])  # fmt: skip
    counts = {s: sum(v.status == s for v in gate.verdicts) for s in order}
    regressed = sorted({v.measure for v in gate.verdicts if v.status == "regressed"})
    grid.notes = [", ".join(f"{n} {s}" for s, n in counts.items() if n)]
    if regressed:
        grid.notes.append(f"regressed in: {' and '.join(regressed)}")
    grid.notes += list(gate.notes)
    return grid


LIBRARIES = ("albumentations_dist", "albumentations", "opencv", "numpy")  # what a history names where it changed


def history_grid(h: History) -> Grid:
    """Each configuration's images/s run after run (drift-corrected when every run was calibrated); ▼/▲ marks
    the first run where a change became significant, against the run the trend was at before it."""
    unit = "images/s at the first run's machine speed" if h.corrected else "images/s (raw: not every run calibrated)"
    machine = h.runs[-1].results.machine.summary()
    grid = Grid(
        f"history · {len(h.runs)} runs · {h.runs[0].results.kind} · {unit} · {machine}",
        ["#", "run", *(t.label for t in h.trends)],
    )
    marks = {(c.run, t.key): c for t in h.trends for c in t.changes}
    for i, run in enumerate(h.runs):
        cells = []
        for t in h.trends:
            v, change = t.values[i], marks.get((i, t.key))
            mark = "" if change is None else f" {'▼' if change.change < 0 else '▲'} {change.change:+.0%}"
            busy = t.busy[i] if i < len(t.busy) else None
            cells.append("–" if v is None else f"{v:.0f}{mark}" + (f" {BUSY}" if busy else ""))
        grid.rows.append([str(i + 1), run.label, *cells])
    for t in h.trends:
        for c in t.changes:
            word = "slower" if c.change < 0 else "faster"
            grid.notes.append(f"{t.label}: significantly {word} from run {c.run + 1} ({h.runs[c.run].label}): {c.reason}")
    for i, run in enumerate(h.runs):
        said = next((t.busy[i] for t in h.trends if i < len(t.busy) and t.busy[i]), None)
        if said:
            grid.notes.append(f"{BUSY} run {i + 1} ({run.label}) was measured on a busy machine: {said}; drawn, never judged")
    if not any(t.changes for t in h.trends):
        grid.notes.append("no significant change in any configuration over these runs")
    for i in range(1, len(h.runs)):  # a library upgrade is the likely cause of a change at that run
        before, now = h.runs[i - 1].results.machine.versions, h.runs[i].results.machine.versions
        changed = [f"{k} {before[k]} → {now[k]}" for k in LIBRARIES if k in before and k in now and before[k] != now[k]]
        if changed:
            grid.notes.append(f"run {i + 1} ({h.runs[i].label}): {', '.join(changed)}")
    machines = {run.results.machine.summary() for run in h.runs}
    if len(machines) > 1:
        grid.notes.append(f"measured on {len(machines)} machines: images/s compare only within one")
    return grid
