"""`pdl run`: one configuration, every chosen loader against the sequential baseline."""

from __future__ import annotations

from typing import Annotated

import typer

from ..machine.cpu import cpu_info
from .common import guarded, inputs_maker, inputs_path
from .measuring import measure_and_report
from .options import Shared, measuring_options

MEMORY_EPOCHS = 5  # enough to see whether memory stays flat from epoch to epoch


@guarded
@measuring_options
def run(
    shared: Shared,
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help="Shipped level or YAML path.")] = "medium",
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="Worker count. Default: usable cores.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per batch.")] = 64,
    stages: Annotated[bool, typer.Option("--stages", help="Also show where the time goes per stage.")] = False,
    memory: Annotated[
        bool,
        typer.Option("--memory", help="Also measure peak memory (PSS of main + workers) over 5 more epochs per loader, untimed."),
    ] = False,
) -> None:
    """Measure one pipeline: the sequential loader against the parallel one(s), on the same work."""
    exp = shared.experiment(
        inputs_path(shared.inputs),
        kind="run",
        pipelines=(pipeline,),
        workers=(workers if workers is not None else cpu_info().usable,),
        batch_sizes=(batch_size,),
        memory_epochs=MEMORY_EPOCHS if memory else 0,
    )
    measure_and_report(exp, shared.results, shared.quiet, stages=stages, make_inputs=inputs_maker(shared.inputs, shared.quiet))
