"""The `pdl` command: thin declarations over the library; the core raises, `guarded` catches once."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer._click import exceptions as click  # typer >= 0.29 carries its own click
from typer.core import TyperGroup

from .._version import __version__
from .common import say
from .compare import compare_cmd
from .decode import decode_cmd
from .misc import info, inputs, pipelines
from .profile import profile_cmd
from .report import report
from .run import run
from .sweeps import sweep_batch, sweep_workers
from .tune import tune_cmd


class OneLineErrors(TyperGroup):
    """A usage error (an unknown option, a value not among the choices) is one line on stderr and exit 2, like
    every other error of pdl, not a usage block in a panel."""

    def main(self, args: Sequence[str] | None = None, standalone_mode: bool = True, **kwargs: Any) -> Any:  # type: ignore[override]
        if not standalone_mode:
            return super().main(args=args, standalone_mode=False, **kwargs)
        try:
            code = super().main(args=args, standalone_mode=False, **kwargs)
        except click.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(0)
        except click.UsageError as exc:
            where = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            say("error:", "red", exc.format_message().replace("Value error, ", "") + where)  # typer's coercion adds it
            sys.exit(2)
        except click.ClickException as exc:
            say("error:", "red", exc.format_message())
            sys.exit(exc.exit_code)
        except typer.Abort:
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="pdl",
    cls=OneLineErrors,
    help="How much faster does a parallel prefetching loader make your augmentation pipeline, on this machine?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # not Rich markup: an install hint such as pdl[plot] shows as written
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"pdl {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print pdl's version and exit.")
    ] = False,
) -> None:
    """How much faster does a parallel prefetching loader make your augmentation pipeline, on this machine?"""


app.command("run")(run)
app.command("sweep-workers")(sweep_workers)
app.command("sweep-batch")(sweep_batch)
app.command("compare")(compare_cmd)
app.command("report")(report)
app.command("tune")(tune_cmd)
app.command("decode")(decode_cmd)
app.command("profile")(profile_cmd)
app.command("inputs")(inputs)
app.command("info")(info)
app.command("pipelines")(pipelines)


def main() -> None:
    app()
