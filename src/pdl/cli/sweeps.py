"""`pdl sweep-workers` (the report's Table 1) and `pdl sweep-batch` (its Table 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
from ..experiments import Experiment
from ..pipeline import shipped_names
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
    int_list,
    name_list,
    resolve_inputs,
)  # fmt: skip
from .measuring import measure_and_report

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
def sweep_workers(
    maximum: Annotated[int, typer.Option("--max", help="Most workers.")] = 8,
    minimum: Annotated[int, typer.Option("--min", help="Fewest workers.")] = 1,
    workers: Annotated[str | None, typer.Option("--workers", "-w", help="Explicit counts, e.g. 1,2,4,6,8.")] = None,
    pipelines: Annotated[str | None, typer.Option("--pipelines", help="Comma list. Default: all shipped levels.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per batch (the report: 300).")] = 300,
    inputs: InputsOpt = None,
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
    results: ResultsOpt = Path("results"),
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Speedup for each pipeline × worker count (the report's Table 1)."""
    exp = Experiment(
        kind="sweep-workers",
        inputs=resolve_inputs(inputs, quiet),
        pipelines=name_list(pipelines) if pipelines else tuple(shipped_names()),
        workers=worker_counts(minimum, maximum, workers),
        batch_sizes=(batch_size,),
        loaders=_with_baseline(loaders),
        prefetch=prefetch, repeats=repeats, limit=limit, seed=seed, augment_in=augment_in, on_error=on_error,
        timeout=timeout, start_method=start_method, extra={"ray_address": ray_address} if ray_address else {},
    )  # fmt: skip
    measure_and_report(exp, results, quiet)


@guarded
def sweep_batch(
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Comma list of batch sizes.")] = "10,50,100,300,500,1000",
    workers: Annotated[int, typer.Option("--workers", "-w", help="Worker count.")] = 2,
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help="Shipped level or YAML path.")] = "medium",
    inputs: InputsOpt = None,
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
    results: ResultsOpt = Path("results"),
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Speedup for each batch size at a fixed worker count (the report's Table 2)."""
    exp = Experiment(
        kind="sweep-batch",
        inputs=resolve_inputs(inputs, quiet),
        pipelines=(pipeline,),
        workers=(workers,),
        batch_sizes=int_list("--batch-sizes", batch_sizes),
        loaders=_with_baseline(loaders),
        prefetch=prefetch, repeats=repeats, limit=limit, seed=seed, augment_in=augment_in, on_error=on_error,
        timeout=timeout, start_method=start_method, extra={"ray_address": ray_address} if ray_address else {},
    )  # fmt: skip
    measure_and_report(exp, results, quiet)


def _with_baseline(loaders: str) -> tuple[str, ...]:
    names = name_list(loaders)
    return names if "sequential" in names else ("sequential", *names)
