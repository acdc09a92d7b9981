"""`pdl profile`: what each transform of a pipeline and the decoder cost on these images, and which decoder to use."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from ..bench.profile import profile, ticks
from ..bench.runner import prepare
from ..data.decoders import NAMES, check_decoder
from ..errors import ConfigError
from ..loaders import BASELINE, LOADERS
from ..machine.cpu import cpu_info
from ..report.render import grids
from .common import check_choice, guarded, inputs_maker, inputs_path, recording
from .options import Shared, measuring_options, name_list

IMAGES = 160  # profiled when --limit is not given: enough for stable medians, a few seconds a repeat
_NOT_HERE = (
    "loaders", "prefetch", "prefetch_epochs", "chunk_size", "augment_in", "timeout", "start_method", "ray_address",
    "rank", "world_size", "cache", "step_ms", "step_kind", "wait_quiet", "if_busy", "ceiling",
)  # fmt: skip


@guarded
@measuring_options(leave_out=_NOT_HERE)
def profile_cmd(
    shared: Shared,
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help="Shipped level or YAML path.")] = "medium",
    decoders: Annotated[
        str | None,
        typer.Option("--decoders", help=f"Also time these JPEG decoders on the same files: a comma list of {', '.join(NAMES)}."),
    ] = None,
    loader: Annotated[
        str | None,
        typer.Option(
            "--loader", help="With --decoders: also time this loader with each decoder, in the same interleaved rounds."
        ),
    ] = None,
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="--loader's workers. Default: usable cores.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="--loader's images per batch.")] = 64,
) -> None:
    """Time each transform of the pipeline (each branch of OneOf/SomeOf too) on these images, with read and decode
    beside them: ms per image, share, how often it ran against its p. Sequential, under the loaders' thread
    settings, the same images and per-image seeds as the loaders. The first 160 images unless --limit says."""
    names = tuple(check_decoder(n, "--decoders") for n in name_list(decoders or ""))
    if loader is not None and not names:
        raise ConfigError(
            f"--loader {loader}: it times a loader with each decoder; give --decoders too, e.g. --decoders opencv,simplejpeg"
        )
    shared = replace(shared, limit=shared.limit or IMAGES)
    exp = shared.experiment(
        inputs_path(shared.inputs),
        kind="profile",
        loaders=(check_choice("--loader", loader, LOADERS) if loader else BASELINE,),
        pipelines=(pipeline,),
        workers=(workers if workers is not None else cpu_info().usable,),
        batch_sizes=(batch_size,),
    )
    plan = prepare(exp, inputs_maker(shared.inputs, shared.quiet))  # bad input fails here, before anything is printed or written
    total = ticks(exp.rounds, bool(names), (1 + len(names)) if loader else 0)
    with recording(shared.results, "profile", "measurements", total, shared.quiet) as (rec, tick):
        results = profile(plan, names, loader, rec.save, tick)
    rec.done(grids(results))
