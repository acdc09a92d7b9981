"""`pdl compare`: base and head, each a `pdl run` configuration (its own Python too), measured in the same command as
interleaved pairs until every measure's paired change is decided. Exit 0 no regression, 1 regression, 3
inconclusive, 2 bad input."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from ..bench.compare import Budget, Status, Thresholds, compare
from ..bench.experiment import Experiment
from ..bench.files import ResultWriter
from ..bench.runner import prepare
from ..errors import ConfigError
from ..machine.cpu import cpu_info
from ..report.comparing import change_summary, exit_code
from ..report.export import FORMATS, Shown
from ..report.gate import parse_threshold
from ..report.render import grids
from ..stats.paired import MIN_PAIRS
from .common import check_choice, check_signals, err, guarded, inputs_maker, inputs_path, keeping, path_value, say
from .options import Shared, measuring_options, name_list
from .report import emit, job_summary

MAX_SLOWDOWN = "5%"
MAX_SPEEDUP_DROP = "10%"
MAX_TIME_S = 300.0
MAX_PAIRS = 60
BASE_FIELDS = {  # --base-X: the Experiment field it sets on the base side
    "base_pipeline": "pipelines",
    "base_workers": "workers",
    "base_batch_size": "batch_sizes",
    "base_loaders": "loaders",
    "base_decoder": "decoder",
    "base_prefetch": "prefetch",
}


@guarded
@measuring_options(leave_out=("repeats", "ceiling", "precision", "max_time"))
def compare_cmd(
    shared: Shared,
    pipeline: Annotated[str, typer.Option("--pipeline", "-p", help="Head: shipped level or YAML path.")] = "medium",
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="Head: worker count. Default: usable cores.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Head: images per batch.")] = 64,
    base_pipeline: Annotated[str | None, typer.Option(help="Base: pipeline (default: head's).")] = None,
    base_workers: Annotated[int | None, typer.Option(help="Base: worker count (default: head's).")] = None,
    base_batch_size: Annotated[int | None, typer.Option(help="Base: images per batch (default: head's).")] = None,
    base_loaders: Annotated[str | None, typer.Option(help="Base: loaders, as many as head's (default: head's).")] = None,
    base_decoder: Annotated[str | None, typer.Option(help="Base: JPEG decoder (default: head's).")] = None,
    base_prefetch: Annotated[int | None, typer.Option(help="Base: batches in flight per worker (default: head's).")] = None,
    base_python: Annotated[
        Path | None,
        typer.Option(
            parser=path_value,
            help="Base: the Python of another environment (a venv of the base commit, other library versions), with "
            "pdl installed. Default: this one.",
        ),
    ] = None,
    max_slowdown: Annotated[
        str, typer.Option(help="The smallest slowdown of images/s that counts (A/A on 2 cores: within ±2%).")
    ] = MAX_SLOWDOWN,
    max_speedup_drop: Annotated[str, typer.Option(help="The smallest drop of a parallel loader's speedup that counts.")] = (
        MAX_SPEEDUP_DROP
    ),
    max_time: Annotated[
        float, typer.Option(help="Seconds for the whole comparison; undecided then: inconclusive (exit 3).")
    ] = MAX_TIME_S,
    max_pairs: Annotated[int, typer.Option(help="Most pairs to keep; undecided then: inconclusive (exit 3).")] = MAX_PAIRS,
    fmt: Annotated[str, typer.Option("--format", help=f"{', '.join(FORMATS)}.")] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", parser=path_value, help="Write the table there instead.")
    ] = None,
) -> None:
    """Is head slower than base? Both measured here, in interleaved pairs, until the answer is certain: exit 0 no
    regression, 1 regression, 3 inconclusive, 2 bad input."""
    check_choice("--format", fmt, FORMATS)
    limits = Thresholds(parse_threshold("--max-slowdown", max_slowdown), parse_threshold("--max-speedup-drop", max_speedup_drop))
    if not max_time > 0:
        raise ConfigError(f"--max-time {max_time}: give the seconds the comparison may take, e.g. 300")
    if max_pairs < MIN_PAIRS:
        raise ConfigError(f"--max-pairs {max_pairs}: at least {MIN_PAIRS} (the fewest with a 95% interval)")
    given = {"base_pipeline": base_pipeline, "base_workers": base_workers, "base_batch_size": base_batch_size}
    given |= {"base_loaders": base_loaders, "base_decoder": base_decoder, "base_prefetch": base_prefetch}
    head = shared.experiment(
        inputs_path(shared.inputs),
        kind="run",
        pipelines=(pipeline,),
        workers=(workers if workers is not None else cpu_info().usable,),
        batch_sizes=(batch_size,),
    )
    base = base_experiment(head, given)
    python = check_python(base_python)
    plan = prepare(head, inputs_maker(shared.inputs, shared.quiet))  # every check before any work: head's
    if base_python is None:
        prepare(base)  # the base's pipeline and decoder here too; another environment checks its own at set-up
    sides = (python, fields(base, plan.dataset.root)), (sys.executable, fields(head, plan.dataset.root))
    writer = ResultWriter(shared.results, "compare")
    with keeping(writer, "pairs"), progress(max_time, shared.quiet) as bar:
        final, warnings = compare(plan, sides, limits, Budget(max_time, max_pairs), writer.save, bar)
    for warning in warnings:
        say("warning:", "yellow", warning)
    shown = Shown((final,), tuple(grids(final)))
    emit(fmt, output, shown)
    job_summary(shown)
    if not shared.quiet:
        err.print(f"saved {writer.path} (and .csv)", markup=False, highlight=False)
    assert final.compared is not None
    raise typer.Exit(exit_code(final.compared.measured))


def base_experiment(head: Experiment, given: dict[str, Any]) -> Experiment:
    """Head's experiment with the base's own options; a bad one is named as its --base- flag."""
    changes: dict[str, Any] = {}
    for option, value in given.items():
        if value is None:
            continue
        name = BASE_FIELDS[option]
        if name == "loaders":
            changes[name] = (head.loaders[0], *[n for n in name_list(value, "--base-loaders") if n != head.loaders[0]])
        elif name in ("pipelines", "workers", "batch_sizes"):
            changes[name] = (value,)
        else:
            changes[name] = value
    try:
        base = dataclasses.replace(head, **changes)
    except ConfigError as exc:
        text = str(exc)
        for option in (o for o, v in given.items() if v is not None):
            flag = "--" + option.removeprefix("base_").replace("_", "-")
            text = re.sub(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", "--" + option.replace("_", "-"), text)
        raise ConfigError(text) from None
    if len(base.loaders) != len(head.loaders):
        raise ConfigError(
            f"--base-loaders {','.join(base.loaders)} and --loaders {','.join(head.loaders)}: name as many loaders on each "
            "side (they are compared by position)"
        )
    return base


def check_python(path: Path | None) -> str:
    """The base side's interpreter: this one by default; another must exist and be executable."""
    if path is None:
        return sys.executable
    if not path.is_file() or not os.access(path, os.X_OK):
        raise ConfigError(f"--base-python {path}: no such executable file: give the path of a Python, e.g. base/.venv/bin/python")
    return str(path)


def fields(exp: Experiment, inputs: Path) -> dict[str, Any]:
    """What a side needs to rebuild ``exp``: every field that is not its default (a side's pdl of another
    version then meets only the options actually used), paths absolute, tuples as lists."""
    defaults = {f.name: f.default for f in dataclasses.fields(Experiment) if f.default is not dataclasses.MISSING}
    found: dict[str, Any] = {}
    for name, value in exp.options().items():
        if name in defaults and value == defaults[name]:
            continue
        found[name] = list(value) if isinstance(value, tuple) else value
    found["inputs"] = str(inputs.resolve()) if inputs.exists() else str(inputs)
    found["pipelines"] = [str(Path(p).resolve()) if Path(p).suffix in (".yaml", ".yml") else p for p in exp.pipelines]
    return found


class Bar:
    """The command's progress: called with a ``Status`` after each pair; ``status`` says why it waits."""

    def __init__(self, update: Callable[[str, float | None], None] | None = None) -> None:
        self.update = update

    def __call__(self, status: Status) -> None:
        s = status
        said = f" · {change_summary(s.headline)}" if s.headline is not None else ""
        dropped = f", {s.dropped} dropped" if s.dropped else ""
        left = max(0.0, s.max_time_s - s.elapsed_s)
        self._show(f"{s.kept} pairs{dropped}{said} · {left:.0f} s left", s.elapsed_s)

    def status(self, message: str) -> None:
        self._show(message, None)

    def _show(self, text: str, elapsed: float | None) -> None:
        if self.update is not None:
            self.update(text, elapsed)
        check_signals()


@contextmanager
def progress(max_time: float, quiet: bool) -> Iterator[Bar]:
    """A time bar toward --max-time: pairs kept and dropped, the widest undecided interval, the time left."""
    if quiet:
        yield Bar()
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task("comparing", total=max_time)

        def update(text: str, elapsed: float | None) -> None:
            if elapsed is None:
                bar.update(task, description=text)
            else:
                bar.update(task, completed=elapsed, description=text)

        yield Bar(update)
