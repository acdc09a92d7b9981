"""The shared body of run, sweep-workers and sweep-batch: measure, save after each point, print the tables."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..bench.experiment import Experiment
from ..bench.records import ResultSet
from ..bench.runner import budget_of, execute, prepare
from ..data.cache import IGNORED_ABOVE
from ..machine.cpu import cpu_info
from ..report.render import grids
from .common import err, recording


def measure_and_report(
    exp: Experiment, results_dir: Path, quiet: bool, stages: bool = False, make_inputs: Callable[[], object] | None = None
) -> ResultSet:
    plan = prepare(exp, make_inputs)  # bad input fails here, before anything is measured or written
    usable = cpu_info().usable
    if max(exp.workers) > usable and not quiet:  # the main process mostly waits: measured, and marked, if it does not
        err.print(
            f"[yellow]note:[/] {max(exp.workers)} workers exceed the {usable} usable cores: such points are "
            "oversubscribed (marked ⚠ in the sweeps), so their speedup is bounded by the cores, not the loader"
        )
    seconds = budget_of(exp) if exp.auto else None
    with recording(results_dir, exp.kind, "points", exp.points * exp.epochs_per_point(), quiet, seconds) as (rec, bar):
        results = execute(plan, rec.save, bar, bar.status, bar.points)
    rec.done(grids(results, stages=stages), *([cold_line(results)] if exp.cache == "cold" else []))
    return results


def cold_line(results: ResultSet) -> str:
    """How the cold page cache went: evicted (with the share still cached), ignored, or unchecked."""
    shares = [p.cache_resident for p in results.points if p.cache_resident is not None]
    if not shares:
        return "page cache: cold (files evicted before every timed epoch; could not check that they left the cache)"
    worst = max(shares)
    if worst > IGNORED_ABOVE:
        return f"page cache: NOT cold: {worst:.0%} of the checked pages stayed cached (the filesystem ignores eviction)"
    return f"page cache: cold (files evicted before every timed epoch; at most {worst:.0%} of the checked pages stayed)"
