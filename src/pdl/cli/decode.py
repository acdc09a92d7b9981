"""`pdl decode`: what --reduce-decode gains on these images, per pipeline, and what it changes in the output."""

from __future__ import annotations

from typing import Annotated

import typer

from ..bench.decode_gain import decode_gains, epochs_per_pipeline
from ..bench.runner import prepare
from ..data.pipeline import LEVELS
from ..loaders import LOADERS
from ..machine.cpu import cpu_info
from ..report.decoding import decode_grid
from .common import check_choice, guarded, inputs_maker, inputs_path, recording
from .options import Shared, measuring_options, name_list


@guarded
@measuring_options(leave_out=("loaders", "reduce_decode", "step_ms", "step_kind", "cache", "wait_quiet", "if_busy", "ceiling"))
def decode_cmd(
    shared: Shared,
    pipelines: Annotated[str, typer.Option("--pipelines", help="Comma list of shipped levels or YAML paths.")] = ",".join(LEVELS),
    loader: Annotated[
        str, typer.Option("--loader", help=f"The loader to time both ways, one of: {', '.join(LOADERS)}.")
    ] = "process",
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="Worker count. Default: usable cores.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Images per batch.")] = 64,
) -> None:
    """Time one loader with full and with reduced JPEG decoding (--reduce-decode) in the same interleaved rounds,
    per pipeline: images/s both ways, the gain, how many images were decoded reduced, and the mean absolute
    difference it makes to the pipeline's output."""
    exp = shared.experiment(
        inputs_path(shared.inputs),
        kind="decode",
        loaders=(check_choice("--loader", loader, LOADERS),),
        pipelines=name_list(pipelines, "--pipelines"),
        workers=(workers if workers is not None else cpu_info().usable,),
        batch_sizes=(batch_size,),
    )
    plan = prepare(exp, inputs_maker(shared.inputs, shared.quiet))  # bad input fails here, before anything is printed or written
    ticks = len(plan.pipelines) * epochs_per_pipeline(exp.rounds)
    with recording(shared.results, "decode", "pipelines", ticks, shared.quiet) as (rec, tick):
        results, _ = decode_gains(plan, rec.save, tick)
    rec.done([decode_grid(results)])
