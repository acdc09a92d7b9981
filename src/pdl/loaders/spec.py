"""LoaderSpec: the arguments every loader takes, validated once, by rules the CLI's `Experiment` shares."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, get_args

from ..errors import ConfigError

AugmentIn = Literal["workers", "main"]
OnError = Literal["fail", "skip"]
StartMethod = Literal["fork", "forkserver", "spawn"]

# Each rule: (test, what the value must be). One table for LoaderSpec and the CLI's Experiment, so a value is
# judged the same way everywhere; only the name in the message differs (`prefetch` here, --prefetch there).
Rule = tuple[Callable[[Any], bool], str]


def whole(low: int) -> Rule:
    return (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low, f"a whole number >= {low}")


def _one_of(kind: Any) -> Rule:
    choices = [repr(c) for c in get_args(kind)]
    return (lambda v: v in get_args(kind), ", ".join(choices[:-1]) + " or " + choices[-1])


RULES: dict[str, Rule] = {
    "batch_size": whole(1),
    "num_workers": whole(0),
    "prefetch": whole(1),
    "chunk_size": whole(0),
    "augment_in": _one_of(AugmentIn),
    "on_error": _one_of(OnError),
    "timeout": (lambda v: v is None or (isinstance(v, int | float) and v > 0), "greater than 0 seconds"),
    "start_method": (lambda v: v is None or _one_of(StartMethod)[0](v), "one of " + _one_of(StartMethod)[1]),
    "rank": whole(0),
    "world_size": whole(1),
}


def check_shard(rank: int, world_size: int, name: Callable[[str], str]) -> None:
    """A rank names one of the ``world_size`` shards: 0 <= rank < world_size (each checked by RULES first)."""
    if rank >= world_size:
        raise ConfigError(
            f"{name('rank')} must be below {name('world_size')} ({world_size}): ranks are 0 to {world_size - 1}. Found: {rank}"
        )


def check(values: Mapping[str, Any], name: Callable[[str], str], rules: Mapping[str, Rule] = RULES) -> None:
    """Raise a ConfigError for the first value that breaks its rule, naming it as ``name(field)`` does."""
    for key, value in values.items():
        rule = rules.get(key)
        if rule is not None and not rule[0](value):
            raise ConfigError(f"{name(key)} must be {rule[1]}. Found: {value!r}")


@dataclass(frozen=True)
class LoaderSpec:
    """What every loader takes, whole. A loader ignores the options it has no use for (the registry in
    ``pdl.loaders`` says which loader uses which: ``start_method`` for process-based ones, ``ray_address`` for Ray).
    """

    batch_size: int = 64
    shuffle: bool = False
    seed: int = 0
    drop_last: bool = False
    num_workers: int = 2
    prefetch: int = 2
    chunk_size: int = 0  # images per task for the loaders that split batches; 0: chosen from batch size and workers
    augment_in: AugmentIn = "workers"
    on_error: OnError = "fail"
    timeout: float | None = None
    start_method: StartMethod | None = None  # None: the platform's default (fork on Linux)
    ray_address: str | None = None  # None: RAY_ADDRESS, else a local Ray instance
    rank: int = 0  # this process's shard of every epoch (data-parallel training), as DistributedSampler's
    world_size: int = 1  # how many shards (training processes) share each epoch
    prefetch_epochs: bool = True  # process and thread loaders: the window's room at an epoch's end starts the next

    def __post_init__(self) -> None:
        check({f.name: getattr(self, f.name) for f in fields(self)}, lambda key: f"`{key}`")
        check_shard(self.rank, self.world_size, lambda key: f"`{key}`")

    @classmethod
    def of(cls, spec: LoaderSpec | None = None, **options: Any) -> LoaderSpec:
        """``spec`` with ``options`` applied (keyword use: ``ParallelLoader(ds, pipe, batch_size=32)``)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise ConfigError(f"unknown loader argument `{unknown[0]}`; loaders take {', '.join(sorted(names))}")
        return replace(spec, **options) if spec is not None else cls(**options)
