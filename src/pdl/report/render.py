"""A results file → its tables, whatever its kind."""

from __future__ import annotations

from ..bench.records import ResultSet
from .comparing import compare_grid
from .decoding import decode_grid
from .grid import Grid
from .profiling import profile_grids
from .runs import memory_grid, run_grid, stages_grid
from .sweeps import sweep_batch_grid, sweep_workers_grids
from .tuning import tune_grid


def grids(rs: ResultSet, stages: bool = False) -> list[Grid]:
    """The tables the command that wrote ``rs`` printed."""
    if rs.kind == "compare":
        return [compare_grid(rs)]
    if rs.kind == "decode":
        return [decode_grid(rs)]
    if rs.kind == "profile":
        return profile_grids(rs)
    if rs.kind == "tune":
        return [tune_grid(rs)]
    if rs.kind == "sweep-workers":
        return sweep_workers_grids(rs)
    if rs.kind == "sweep-batch":
        return [sweep_batch_grid(rs)]
    memory = memory_grid(rs)
    return [run_grid(rs), *([stages_grid(rs)] if stages else []), *([memory] if memory else [])]
