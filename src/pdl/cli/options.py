"""The options that run, sweep-workers and sweep-batch share, declared once, with defaults from `Experiment`.

``@measuring_options`` adds them to a command's signature (Typer reads the signature), and hands the command
one ``Shared`` object instead of fourteen parameters. Choices are enums, so ``--help`` lists them.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, get_args, get_type_hints

import typer

from ..bench.experiment import AUTO, Experiment, IfBusy
from ..bench.step import StepKind
from ..data.cache import Cache
from ..data.decoders import NAMES as DECODERS
from ..errors import ConfigError
from ..loaders import BASELINE, LOADERS, installed
from ..loaders.spec import AugmentIn, OnError, StartMethod
from ..stats.rounds import parse_share
from .common import path_value, say

ALL = "all"  # --loaders all: every loader installed here
AUTO_WORD = "auto"  # --repeats auto
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Experiment)}


def choices(name: str, literal: Any) -> type[Enum]:
    """A str Enum of a Literal's values: Typer validates it and ``--help`` lists them."""
    return Enum(name, {value: value for value in get_args(literal)}, type=str)  # type: ignore[return-value]


def repeats_value(text: str | int) -> int:
    """``--repeats``: auto (0: rounds until precise) or a whole number >= 1."""
    if isinstance(text, int):
        return text
    if text.strip().lower() == AUTO_WORD:
        return AUTO
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 1:
        raise typer.BadParameter(f"{text!r}: give auto, or a whole number of rounds >= 1, e.g. 5")
    return value


def share_value(option: str, text: str | float) -> float:
    """A share given as ``3%`` or ``0.03``; a bad one is the option's one line."""
    if isinstance(text, float):
        return text
    try:
        return parse_share(option, text, "give a share between 0 and 1, e.g. 3% or 0.03")
    except ConfigError:
        raise typer.BadParameter(f"{text!r}: give a share between 0 and 1, e.g. 3% or 0.03") from None


AugmentInChoice = choices("AugmentInChoice", AugmentIn)
OnErrorChoice = choices("OnErrorChoice", OnError)
StartMethodChoice = choices("StartMethodChoice", StartMethod)
StepKindChoice = choices("StepKindChoice", StepKind)
CacheChoice = choices("CacheChoice", Cache)
IfBusyChoice = choices("IfBusyChoice", IfBusy)


@dataclass(frozen=True)
class Shared:
    """The shared options as the command received them."""

    inputs: Path | None
    prefetch: int
    prefetch_epochs: bool
    chunk_size: int
    repeats: int
    limit: int | None
    seed: int
    augment_in: Enum
    loaders: str
    on_error: Enum
    timeout: float | None
    start_method: Enum | None
    ray_address: str | None
    reduce_decode: bool
    rank: int | None
    world_size: int | None
    results: Path
    quiet: bool
    verbose: bool
    cache: Enum
    step_ms: str | None = None
    step_kind: Enum | None = None
    decoder: str = _DEFAULTS["decoder"]
    wait_quiet: float = _DEFAULTS["wait_quiet"]
    ceiling: bool = _DEFAULTS["ceiling"]
    if_busy: Enum | None = None
    precision: float = _DEFAULTS["precision"]
    max_time: float | None = None

    def experiment(self, inputs: Path, **fields: Any) -> Experiment:
        """The command's Experiment: its own fields plus these (choices as their values); the baseline is always
        measured, first."""
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _NOT_EXPERIMENT}
        given = {name: value.value if isinstance(value, Enum) else value for name, value in given.items()}
        # an option a command leaves out keeps its default as typed in _SHARED, before any parser ran
        given["repeats"], given["precision"] = repeats_value(given["repeats"]), share_value("--precision", given["precision"])
        for name, var in SHARD_VARS.items():  # not given: the launcher's (torchrun sets RANK and WORLD_SIZE)
            if given[name] is None:
                given[name] = from_env(var, _DEFAULTS[name])
        if "loaders" in fields:  # the command names its loaders itself (decode: one, no baseline)
            return Experiment(inputs=inputs, **given, **fields)
        names = name_list(self.loaders)
        if ALL in names:  # every installed loader, in registry order; say which were left out
            present, missing = installed()
            names = tuple(dict.fromkeys([n for n in names if n != ALL] + list(present)))
            if missing and not self.quiet:
                say("note:", "cyan", f"--loaders all: left out {', '.join(missing)} (not installed: pip install 'pdl[peers]')")
        return Experiment(inputs=inputs, loaders=(BASELINE, *[n for n in names if n != BASELINE]), **given, **fields)


SHARD_VARS = {"rank": "RANK", "world_size": "WORLD_SIZE"}  # option: the environment variable it defaults from


def from_env(var: str, default: int) -> int:
    """A whole number from environment variable ``var`` (``default`` when unset or empty); bad text is one line."""
    text = os.environ.get(var, "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"environment variable {var}={text!r} is not a whole number: fix or unset it") from None


_NOT_EXPERIMENT = ("inputs", "loaders", "results", "quiet", "verbose")  # resolved by the command, or the CLI's own
_SHARED: dict[str, tuple[Any, Any]] = {  # name: (annotated type, default)
    "inputs": (
        Annotated[
            Path | None,
            typer.Option(
                parser=path_value,
                help="Folder of images (class subfolders), or a list: .csv/.tsv (path[,label] header) or .txt (a path a line). Default: inputs/, generated if empty.",
            ),
        ],
        None,
    ),
    "prefetch": (Annotated[int, typer.Option(help="Batches in flight per worker.")], _DEFAULTS["prefetch"]),
    "prefetch_epochs": (
        Annotated[
            bool,
            typer.Option(
                help="process, thread: the window's room at an epoch's end starts the next epoch (off: each epoch starts empty, as torch's)."
            ),
        ],
        _DEFAULTS["prefetch_epochs"],
    ),
    "chunk_size": (
        Annotated[int, typer.Option(help="Images per task for the loaders that split batches (process, thread); 0: auto.")],
        _DEFAULTS["chunk_size"],
    ),
    "repeats": (
        Annotated[
            int,
            typer.Option(
                parser=repeats_value,
                metavar="auto|N",
                help="Measured rounds per point, after one warm-up: auto (at least 3, then more until the speedup's 95% "
                "interval is within --precision, or --max-time ends) or a fixed number.",
            ),
        ],
        "auto",
    ),
    "precision": (
        Annotated[
            float,
            typer.Option(
                parser=lambda text: share_value("--precision", text),
                metavar="SHARE",
                help="--repeats auto: the speedup interval's ± to reach, e.g. 3% or 0.03.",
            ),
        ],
        f"{_DEFAULTS['precision']:.0%}",
    ),
    "max_time": (
        Annotated[
            float | None,
            typer.Option(
                help="Seconds for the whole command (default: run 60, the sweeps 180): --repeats auto gives the points "
                "still uncertain more rounds until then; each point gets at least 3."
            ),
        ],
        None,
    ),
    "limit": (Annotated[int | None, typer.Option(help="Use only the first N images.")], _DEFAULTS["limit"]),
    "seed": (Annotated[int, typer.Option(help="Seed for shuffling and augmentation.")], _DEFAULTS["seed"]),
    "augment_in": (
        Annotated[
            AugmentInChoice, typer.Option(help="Where to augment: in the workers, or in the main process (workers only read).")
        ],
        AugmentInChoice(_DEFAULTS["augment_in"]),
    ),
    "loaders": (
        Annotated[
            str,
            typer.Option(
                help=f"Comma list of: {', '.join(LOADERS)}, or all (every installed one). The sequential baseline is always measured."
            ),
        ],
        ",".join(_DEFAULTS["loaders"]),
    ),
    "on_error": (
        Annotated[OnErrorChoice, typer.Option(help="On an unreadable image: fail, or skip it (counted and listed).")],
        OnErrorChoice(_DEFAULTS["on_error"]),
    ),
    "timeout": (
        Annotated[float | None, typer.Option(help="Seconds to wait for a batch before giving up.")],
        _DEFAULTS["timeout"],
    ),
    "start_method": (
        Annotated[StartMethodChoice | None, typer.Option(help="How worker processes start. Default: fork on Linux.")],
        None,
    ),
    "ray_address": (Annotated[str | None, typer.Option(help="Ray cluster to use (default: a local one).")], None),
    "reduce_decode": (
        Annotated[
            bool,
            typer.Option(
                help="Decode JPEGs at 1/2, 1/4 or 1/8 scale when the pipeline's first resize keeps no more (never smaller)."
            ),
        ],
        False,
    ),
    "decoder": (
        Annotated[
            str,
            typer.Option(
                help=f"The JPEG decoder every loader reads with: {', '.join(DECODERS)} (pillow and simplejpeg: pip install "
                "'pdl[pillow]' or 'pdl[simplejpeg]'). Other formats always decode through OpenCV."
            ),
        ],
        _DEFAULTS["decoder"],
    ),
    "rank": (
        Annotated[
            int | None, typer.Option(help="This process's shard of every epoch (0 to world size - 1). Default: $RANK, else 0.")
        ],
        None,
    ),
    "world_size": (
        Annotated[int | None, typer.Option(help="How many shards share every epoch. Default: $WORLD_SIZE, else 1.")],
        None,
    ),
    "results": (Annotated[Path, typer.Option(parser=path_value, help="Folder for the results files.")], Path("results")),
    "quiet": (Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but the final tables.")], False),
    "verbose": (
        Annotated[
            bool, typer.Option("--verbose", "-v", help="Show a worker's full traceback on error, and Ray's own log lines.")
        ],
        False,
    ),
    "step_ms": (
        Annotated[
            str | None,
            typer.Option(
                help="A simulated training step after each batch: ms per batch (40) or per image (0.5/img). "
                "Adds the data-stall share to the results."
            ),
        ],
        _DEFAULTS["step_ms"],
    ),
    "step_kind": (
        Annotated[StepKindChoice, typer.Option(help="--step-ms: gpu waits without the CPU; cpu spins (host-side work).")],
        StepKindChoice(_DEFAULTS["step_kind"]),
    ),
    "cache": (
        Annotated[
            CacheChoice,
            typer.Option(help="Page cache at each timed epoch: warm, or cold (the images evicted before every epoch)."),
        ],
        CacheChoice(_DEFAULTS["cache"]),
    ),
    "ceiling": (
        Annotated[
            bool,
            typer.Option(
                help="Also time N copies of the sequential loop at once, in the same rounds: the most any loader reaches "
                "here (--no-ceiling skips it)."
            ),
        ],
        _DEFAULTS["ceiling"],
    ),
    "wait_quiet": (
        Annotated[
            float,
            typer.Option(
                help="Seconds (for the whole command) to wait for other processes to leave the CPUs before measuring, "
                "and before measuring a disturbed round again; 0: never wait."
            ),
        ],
        _DEFAULTS["wait_quiet"],
    ),
    "if_busy": (
        Annotated[
            IfBusyChoice,
            typer.Option(
                help="When the machine stays busy past --wait-quiet: measure (busy rounds are marked and kept out of "
                "every verdict), or fail with exit code 4 (for CI runners that must not measure while busy)."
            ),
        ],
        IfBusyChoice(_DEFAULTS["if_busy"]),
    ),
}


def measuring_options(fn: Callable[..., Any] | None = None, *, leave_out: tuple[str, ...] = ()) -> Callable[..., Any]:
    """Give ``fn(shared: Shared, **own)`` the shared options: its signature gains them, after its own.

    ``@measuring_options(leave_out=(...))``: those options are not offered; ``Shared`` holds their defaults.
    """
    if fn is None:
        return functools.partial(measuring_options, leave_out=leave_out)
    unknown = set(leave_out) - set(_SHARED)
    assert not unknown, f"not shared options: {unknown}"
    offered = {name: entry for name, entry in _SHARED.items() if name not in leave_out}
    own = inspect.signature(fn)
    hints = get_type_hints(fn, include_extras=True)
    kind = inspect.Parameter.KEYWORD_ONLY
    params = [p.replace(annotation=hints[p.name], kind=kind) for p in own.parameters.values() if p.name != "shared"]
    params += [inspect.Parameter(name, kind, annotation=ann, default=default) for name, (ann, default) in offered.items()]

    @functools.wraps(fn)
    def command(**kwargs: Any) -> Any:
        shared = Shared(**{name: kwargs.pop(name) if name in offered else default for name, (_, default) in _SHARED.items()})
        return fn(shared, **kwargs)

    command.__signature__ = own.replace(parameters=params, return_annotation=None)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def int_list(option: str, text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise ConfigError(f"{option} '{text}': expected whole numbers separated by commas, e.g. 1,2,4") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{option} '{text}': every value must be a whole number >= 1, e.g. 1,2,4")
    return values


def name_list(text: str, option: str | None = None) -> tuple[str, ...]:
    """The names of a comma list; given an ``option``, a list that names nothing is refused (not read as the default)."""
    names = tuple(v.strip() for v in text.split(",") if v.strip())
    if option is not None and not names:
        raise ConfigError(f"{option} {text!r}: give at least one name, e.g. light,medium")
    return names
