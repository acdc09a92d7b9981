"""`pdl sweep-workers` (the report's Table 1) and `pdl sweep-batch` (its Table 2)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..data.pipeline import shipped_names
from ..errors import ConfigError
from .common import guarded, inputs_maker, inputs_path
from .measuring import measure_and_report
from .options import Shared, int_list, measuring_options, name_list

REPORT_WORKERS = (1, 2, 4, 6, 8)


def worker_counts(minimum: int, maximum: int, explicit: str | None) -> tuple[int, ...]:
    """The report's 1,2,4,6,8 pattern between --min and --max (both included), or an explicit list."""
    if explicit:
        return int_list("--workers", explicit)
    if minimum < 1 or maximum < minimum:
        raise ConfigError(f"--min {minimum} --max {maximum}: need 1 <= min <= max")
    counts = {minimum, maximum} | {w for w in range(minimum, maximum + 1) if w in (1, 2) or w % 2 == 0}
    return tuple(sorted(counts))


@guarded
@measuring_options
def sweep_workers(
    shared: Shared,
    maximum: Annotated[int, typer.Option("--max", help="Most workers.")] = 8,
    minimum: Annotated[int, typer.Option("--min", help="Fewest workers.")] = 1,
    workers: Annotated[str | None, typer.Option("--workers", "-w", help="Explicit counts, e.g. 1,2,4,6,8.")] = None,
    pipelines: Annotated[str | None, typer.Option("--pipelines", help="Comma list. Default: all shipped levels.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per batch (the report: 300).")] = 300,
) -> None:
    """Speedup for each pipeline × worker count (the report's Table 1)."""
    exp = shared.experiment(
        inputs_path(shared.inputs),
        kind="sweep-workers",
        pipelines=name_list(pipelines, "--pipelines") if pipelines is not None else tuple(shipped_names()),
        workers=worker_counts(minimum, maximum, workers),
        batch_sizes=(batch_size,),
    )
    measure_and_report(exp, shared.results, shared.quiet, make_inputs=inputs_maker(shared.inputs, shared.quiet))


@guarded
@measuring_options
def sweep_batch(
    shared: Shared,
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Comma list of batch sizes.")] = "10,50,100,300,500,1000",
    workers: Annotated[int, typer.Option("--workers", "-w", help="Worker count.")] = 2,
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help="Shipped level or YAML path.")] = "medium",
) -> None:
    """Speedup for each batch size at a fixed worker count (the report's Table 2)."""
    exp = shared.experiment(
        inputs_path(shared.inputs),
        kind="sweep-batch",
        pipelines=(pipeline,),
        workers=(workers,),
        batch_sizes=int_list("--batch-sizes", batch_sizes),
    )
    measure_and_report(exp, shared.results, shared.quiet, make_inputs=inputs_maker(shared.inputs, shared.quiet))
