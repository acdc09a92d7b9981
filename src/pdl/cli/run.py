"""`pdl run`: one configuration, every chosen loader against the sequential baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..experiments import Experiment
from ..system import cpu_info
from .common import (
    AugmentInOpt,
    InputsOpt,
    LimitOpt,
    LoadersOpt,
    OnErrorOpt,
    PrefetchOpt,
    QuietOpt,
    RayAddressOpt,
    RepeatsOpt,
    ResultsOpt,
    SeedOpt,
    StartMethodOpt,
    TimeoutOpt,
    VerboseOpt,
    guarded,
    name_list,
    resolve_inputs,
)  # fmt: skip
from .measuring import measure_and_report

MEMORY_EPOCHS = 5  # enough to see whether memory stays flat from epoch to epoch


@guarded
def run(
    inputs: InputsOpt = None,
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help="Shipped level or YAML path.")] = "medium",
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="Worker count. Default: usable cores.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per batch.")] = 64,
    prefetch: PrefetchOpt = 2,
    repeats: RepeatsOpt = 3,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    augment_in: AugmentInOpt = "workers",
    loaders: LoadersOpt = "sequential,process",
    on_error: OnErrorOpt = "fail",
    timeout: TimeoutOpt = None,
    start_method: StartMethodOpt = None,
    ray_address: RayAddressOpt = None,
    stages: Annotated[bool, typer.Option("--stages", help="Also show where the time goes per stage.")] = False,
    memory: Annotated[
        bool,
        typer.Option("--memory", help="Also measure peak memory (PSS of main + workers) over 5 more epochs per loader, untimed."),
    ] = False,
    results: ResultsOpt = Path("results"),
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Measure one pipeline: the sequential loader against the parallel one(s), on the same work."""
    exp = Experiment(
        kind="run",
        inputs=resolve_inputs(inputs, quiet),
        pipelines=(pipeline,),
        workers=(workers if workers is not None else cpu_info().usable,),
        batch_sizes=(batch_size,),
        loaders=name_list(loaders),
        prefetch=prefetch,
        repeats=repeats,
        limit=limit,
        seed=seed,
        augment_in=augment_in,
        on_error=on_error,
        timeout=timeout,
        start_method=start_method,
        extra={"ray_address": ray_address} if ray_address else {},
        memory_epochs=MEMORY_EPOCHS if memory else 0,
    )
    measure_and_report(exp, results, quiet, stages=stages)
