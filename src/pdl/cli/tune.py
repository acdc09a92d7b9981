"""`pdl tune`: the fewest workers (and the prefetch) that keep a training step fed, and the call to use."""

from __future__ import annotations

from typing import Annotated

import typer

from ..bench.runner import prepare
from ..bench.tune import check_tune, parse_target, tune
from ..machine.cpu import cpu_info
from ..report.tuning import tune_grid
from ..stats.rounds import TARGET_STALL
from .common import guarded, inputs_maker, inputs_path, recording, status
from .options import Shared, measuring_options


@guarded
@measuring_options
def tune_cmd(
    shared: Shared,
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help="Shipped level or YAML path.")] = "medium",
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per batch.")] = 64,
    max_workers: Annotated[
        int | None, typer.Option("--max-workers", help="Most workers to try. Default: 2 × usable cores.")
    ] = None,
    target_stall: Annotated[
        str, typer.Option("--target-stall", help="Stall share that counts as fed: 5% or 0.05.")
    ] = f"{TARGET_STALL:.0%}",
    budget_s: Annotated[
        float | None, typer.Option("--budget-s", help="Start no trial that would end past this many seconds.")
    ] = 150.0,
) -> None:
    """Search worker counts (few to many) and prefetch for a step time (--step-ms): the call to use, its stall
    and memory, and the chosen call's share of the measured ceiling. --prefetch is where the worker search runs;
    --loaders names the loader to tune (default process)."""
    target = parse_target(target_stall)
    most = max_workers if max_workers is not None else 2 * cpu_info().usable
    exp = shared.experiment(
        inputs_path(shared.inputs),
        kind="tune",
        pipelines=(pipeline,),
        workers=(1,),
        batch_sizes=(batch_size,),
    )
    check_tune(exp, most, budget_s)
    plan = prepare(exp, inputs_maker(shared.inputs, shared.quiet))  # bad input fails here, before anything is printed or written
    ticks = (most + 1) * (exp.rounds + 1) + 1 + 3 * (exp.rounds + 1) * exp.ceiling
    with recording(shared.results, "tune", "trials", ticks, shared.quiet) as (rec, tick):
        results, _ = tune(plan, most, target, budget_s, rec.save, tick, status(tick))
    rec.done([tune_grid(results)])
