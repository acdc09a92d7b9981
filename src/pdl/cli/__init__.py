"""The `pdl` command: thin declarations over the library; the core raises, `guarded` catches once."""

from __future__ import annotations

import typer

from .misc import info, inputs, pipelines
from .report_cmd import report
from .run import run
from .sweeps import sweep_batch, sweep_workers

app = typer.Typer(
    name="pdl",
    help="How much faster does a parallel prefetching loader make your augmentation pipeline, on this machine?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("run")(run)
app.command("sweep-workers")(sweep_workers)
app.command("sweep-batch")(sweep_batch)
app.command("report")(report)
app.command("inputs")(inputs)
app.command("info")(info)
app.command("pipelines")(pipelines)


def main() -> None:
    app()
