"""What every command shares: consoles, the one place errors are caught, inputs defaulting, progress."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from ..bench.experiment import Experiment, option
from ..bench.files import ResultWriter
from ..bench.records import ResultSet
from ..errors import NoProgressError, PdlError, ResultsNotSaved
from ..loaders.spec import LoaderSpec

# Tables go to stdout, everything else to stderr. Not on a terminal (CI logs, files) tables get 160 columns
# rather than Rich's 80, unless COLUMNS says otherwise.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160  # the run table of every loader
out = Console(highlight=False, width=_WIDTH)
err = Console(stderr=True, highlight=False, width=_WIDTH, soft_wrap=True)

DEFAULT_INPUTS = Path("inputs")
F = TypeVar("F", bound=Callable[..., Any])


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that cleanup runs as it does for Ctrl-C."""


_received: list[int] = []  # signals seen: Python drops an exception raised inside a finalizer or at-fork hook


def _on_signal(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def check_signals() -> None:
    """Re-raise a signal whose exception Python swallowed (it landed in a finalizer); called between epochs."""
    if _received:
        raise KeyboardInterrupt() if _received[-1] == signal.SIGINT else Terminated()


def guarded(fn: F) -> F:
    """Run a command: pdl errors become one red line and exit 2 (1 for a regression); Ctrl-C 130; SIGTERM 143."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        verbose = bool(kwargs.get("verbose"))
        previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        warnings.showwarning = _show_warning
        _received.clear()
        pdl_log = logging.getLogger("pdl")
        level = pdl_log.level
        if verbose:  # pdl's loggers at INFO: the loaders let their engines speak (Ray's log lines)
            pdl_log.setLevel(logging.INFO)
        try:
            result = fn(*args, **kwargs)
            check_signals()
            return result
        except PdlError as exc:
            tb = getattr(exc, "worker_traceback", "")
            if verbose and tb:
                err.print(tb, markup=False, highlight=False)
            say("error:", "red", as_flags(str(exc)))
            if tb and not verbose:
                err.print("  (the worker's full traceback: add --verbose)", style="dim")
            if isinstance(exc, NoProgressError) and stuck_threads():  # a hung thread would hold the exit for ever
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(exc.exit_code)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/] (Ctrl-C)")
            raise typer.Exit(130) from None
        except Terminated:
            err.print("[yellow]terminated[/] (SIGTERM)")
            raise typer.Exit(143) from None
        finally:
            pdl_log.setLevel(level)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    return wrapper  # type: ignore[return-value]


def stuck_threads() -> list[threading.Thread]:
    """Threads other than the main one that the interpreter would wait for at exit (not daemons): after a hang
    (the thread loader's pool blocked in a transform that never returns), they would keep pdl from ending."""
    return [t for t in threading.enumerate() if t.is_alive() and not t.daemon and t is not threading.main_thread()]


def path_value(text: str | Path) -> Path:
    """Every path option's parser: an empty value is refused (``Path("")`` would silently be the current folder).
    A default is already a path: kept as it is."""
    if isinstance(text, Path):
        return text
    if not text.strip():
        raise typer.BadParameter(f"{text!r} is empty: give a path (. for the current folder)")
    return Path(text)


def say(label: str, style: str, text: str) -> None:
    """One line on stderr: a coloured label, then ``text`` verbatim (never read as Rich markup: a value such as
    ``x[bold]y`` or an install hint such as ``pip install 'pdl[plot]'`` prints as it is)."""
    err.print(Text.assemble((label, style), " ", text), highlight=False, soft_wrap=True)


# The library's errors name its own fields and parameters (`num_workers`, `timeout`, ImageFolder's `root`); the
# CLI's lines name the flags they come from: Experiment's own mapping (``option``: `chunk_size` → --chunk-size),
# but where the library's name is not the field the flag fills.
FLAGS = {"num_workers": "--workers", "root": "--inputs"}
FIELDS = {f.name for f in dataclasses.fields(LoaderSpec)} | {f.name for f in dataclasses.fields(Experiment)}
FIELDS |= {"pipeline"} | set(FLAGS)  # load_pipeline's parameter: the --pipeline option


def as_flags(message: str) -> str:
    """``raise `timeout``` → ``raise --timeout``: each backquoted field the library names, as the CLI's flag."""
    return re.sub(r"`([a-z_]+)`", lambda m: FLAGS.get(m[1]) or option(m[1]) if m[1] in FIELDS else m[0], message)


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    say("warning:", "yellow", as_flags(str(message)))


def inputs_path(inputs: Path | None) -> Path:
    """The user's folder or list as given; without one, ``inputs/`` (made by ``inputs_maker`` once the rest of
    the command has been checked)."""
    return DEFAULT_INPUTS if inputs is None else inputs


def inputs_maker(inputs: Path | None, quiet: bool) -> Callable[[], None]:
    """What makes the default inputs when none were given and ``inputs/`` holds no images: called by
    ``runner.prepare`` after every option and pipeline was checked, so a typo never waits for the images."""

    def make() -> None:
        from ..data.synth import DEFAULT_CLASSES, DEFAULT_PER_CLASS, generate, has_images

        if inputs is not None or has_images(DEFAULT_INPUTS):
            return
        n = DEFAULT_CLASSES * DEFAULT_PER_CLASS
        if not quiet:
            err.print(f"{DEFAULT_INPUTS}/ holds no images: generating the default set ({n} photo-like JPEGs) first", markup=False)
        generate(DEFAULT_INPUTS, DEFAULT_CLASSES, DEFAULT_PER_CLASS)

    return make


@contextmanager
def keeping(writer: ResultWriter, what: str) -> Iterator[None]:
    """Around a measurement that saves as it goes through ``writer``: if it stops (Ctrl-C, SIGTERM, a pdl
    error or a bug), say where what was measured is kept, or leave no empty file; then let it propagate."""
    try:
        yield
    except BaseException:
        if writer.saved:
            err.print(f"the {what} measured before it stopped are saved in {writer.path}", markup=False)
        else:
            writer.discard_if_unused()
        raise


@dataclass(frozen=True)
class Recording:
    """Where a measuring command saves as it goes; ``done`` prints its tables, then where they are saved."""

    writer: ResultWriter
    quiet: bool

    def save(self, results: ResultSet) -> None:
        self.writer.save(results)

    def done(self, grids: Iterable[Any], *notes: str) -> None:
        """The tables, then where they are saved; when --results could not take them, one line saying where they
        are instead, and exit 5 (``ResultsNotSaved``): the measurement is kept, the save failed."""
        for grid in grids:
            show(grid)
        elsewhere = self.writer.not_saved()
        if elsewhere is not None:
            raise ResultsNotSaved(elsewhere)
        if not self.quiet:
            for line in (*notes, f"saved {self.writer.path} (and .csv)"):
                err.print(line, highlight=False, markup=False)


@contextmanager
def recording(
    results_dir: Path, kind: str, what: str, ticks: int, quiet: bool, seconds: float | None = None
) -> Iterator[tuple[Recording, Bar]]:
    """Around a measurement: a writer that saves after each step (an interruption says where ``what`` measured so
    far is kept, or leaves no empty file) and a progress bar over ``ticks`` epochs, or over ``seconds`` of budget."""
    writer = ResultWriter(results_dir, kind)
    with keeping(writer, what), progress_bar(ticks, quiet, seconds) as tick:
        yield Recording(writer, quiet), tick


class Bar:
    """A command's progress: ``bar(msg)`` after each epoch, ``bar.status(msg)`` for why it waits (a busy machine),
    ``bar.points(done, total, uncertain)`` after each group of points. Over a count of epochs, or over a budget of
    seconds (--repeats auto: how many rounds is not known up front). Without a Rich bar (--quiet) it only lets a
    signal through."""

    def __init__(self, update: Callable[[str, float | None], None] | None = None, seconds: float | None = None) -> None:
        self.update, self.seconds = update, seconds
        self.started = time.monotonic()
        self.done = ""

    def __call__(self, msg: str) -> None:
        if self.update is not None:
            if self.seconds is None:
                self.update(msg, None)
            else:
                left = max(0.0, self.seconds - (time.monotonic() - self.started))
                self.update(f"{self.done}{msg} · {left:.0f} s left", time.monotonic() - self.started)
        check_signals()

    def status(self, msg: str) -> None:
        if self.update is not None:
            self.update(msg, -1.0)
        check_signals()

    def points(self, done: int, total: int, uncertain: int) -> None:
        self.done = f"{done}/{total} points" + (f", {uncertain} uncertain" if uncertain else "") + " · "


@contextmanager
def progress_bar(total: int, quiet: bool, seconds: float | None = None) -> Iterator[Bar]:
    """A Rich progress bar with ETA over the epochs to run (or with ``seconds``: elapsed against that budget);
    nothing with --quiet."""
    if quiet:
        yield Bar()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    counted = (MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    columns = (TextColumn("{task.description}"), BarColumn(), *(counted if seconds is None else (TimeElapsedColumn(),)))
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("measuring", total=total if seconds is None else seconds)

        def update(msg: str, elapsed: float | None) -> None:
            if elapsed is None:  # an epoch done
                bar.update(task, advance=1, description=msg)
            elif elapsed < 0:  # a status: no step
                bar.update(task, description=msg)
            else:
                bar.update(task, completed=elapsed, description=msg)

        yield Bar(update, seconds)


def status(tick: Callable[[str], None]) -> Callable[[str], None]:
    """The progress bar's status line (what it is waiting for), from the ``tick`` that ``progress_bar`` made."""
    found: Callable[[str], None] = getattr(tick, "status", lambda _msg: None)
    return found


def show(grid: Any) -> None:
    """A result table, then its notes as whole lines."""
    from .tables import to_rich

    out.print(to_rich(grid))
    for note in grid.notes:
        out.print(note, soft_wrap=True, markup=False)


def check_choice(option: str, value: str, choices: tuple[str, ...]) -> str:
    from ..errors import ConfigError

    if value not in choices:
        raise ConfigError(f"{option} '{value}': choose one of {', '.join(choices)}")
    return value
