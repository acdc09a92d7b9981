"""Experiment: everything one command measures, typed and validated once, before any work starts.

Values shared with ``LoaderSpec`` are judged by the same rules (``loaders.spec.RULES``); messages name the
CLI's options (``--prefetch``), since that is where the values come from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from ..data.cache import CACHES, Cache
from ..data.decoders import DEFAULT as DEFAULT_DECODER
from ..data.decoders import check_decoder
from ..errors import ConfigError
from ..loaders import BASELINE, LOADERS, REGISTRY, uses
from ..loaders.spec import RULES, AugmentIn, LoaderSpec, OnError, StartMethod, check, check_shard, whole
from ..stats.rounds import PRECISION
from .records import Kind
from .step import Step, StepKind, parse_step

IfBusy = Literal["measure", "fail"]  # what a measuring command does when the machine stays busy past --wait-quiet

# LoaderSpec's rules, and those of what only an experiment has (a sequential loader may have 0 workers; a
# measured point has at least 1)
EXPERIMENT_RULES = {**RULES, "workers": whole(1), "repeats": whole(0), "memory_epochs": whole(0), "limit": whole(1)}
AUTO = 0  # repeats: rounds until each speedup is precise (--repeats auto)
LEAST_ROUNDS = 3  # auto: the fewest rounds a point gets (a fixed count for profile and decode)


def option(field: str) -> str:
    """The CLI option a field comes from: ``batch_sizes`` → ``--batch-size``."""
    return "--" + {"batch_sizes": "batch_size", "memory_epochs": "memory"}.get(field, field).replace("_", "-")


@dataclass(frozen=True)
class Experiment:
    kind: Kind
    inputs: Path
    pipelines: tuple[str, ...]
    workers: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    loaders: tuple[str, ...] = (BASELINE, "process")  # the baseline first
    prefetch: int = 2
    chunk_size: int = 0  # images per task for loaders that split batches; 0: chosen per batch size and workers
    repeats: int = AUTO  # rounds per point; AUTO (0): at least LEAST_ROUNDS, then until precise or the budget ends
    limit: int | None = None
    seed: int = 0
    shuffle: bool = True
    augment_in: AugmentIn = "workers"
    on_error: OnError = "fail"
    timeout: float | None = None
    start_method: StartMethod | None = None
    ray_address: str | None = None
    reduce_decode: bool = False  # JPEGs decoded at 1/2, 1/4 or 1/8 scale where the first resize keeps no more
    decoder: str = DEFAULT_DECODER  # the JPEG decoder every loader reads with (data/decoders.py)
    memory_epochs: int = 0  # per loader, after the timed rounds: peak memory sampled
    step_ms: str | None = None  # the consumer's simulated training step: "40" ms per batch or "0.5/img"
    step_kind: StepKind = "gpu"  # gpu: the step waits without the CPU; cpu: it spins
    rank: int = 0  # the shard measured (data-parallel training): this rank's share of every epoch
    world_size: int = 1
    cache: Cache = "warm"  # cold: the dataset's files evicted from the page cache before every timed epoch
    prefetch_epochs: bool = True  # process and thread loaders: the next epoch's first batches made while this one ends
    wait_quiet: float = 30.0  # seconds (for the whole command) to wait for other processes to leave the CPUs; 0: never
    ceiling: bool = True  # also time N copies of the sequential loop in the same rounds: what the machine can give
    if_busy: IfBusy = "measure"  # measure: rounds another process disturbed are marked and kept out of verdicts; fail: exit 4
    precision: float = PRECISION  # --repeats auto: rounds until each speedup's 95% interval is within ±this share
    max_time: float | None = None  # seconds for the whole command (--repeats auto spends them where points are uncertain)

    def __post_init__(self) -> None:
        parse_step(self.step_ms, self.step_kind)  # --step-ms and --step-kind checked here, before any work
        check_decoder(self.decoder)
        for name, values in (("workers", self.workers), ("batch_sizes", self.batch_sizes)):
            if not values:
                raise ConfigError(f"{option(name)}: give at least one value, e.g. 2")
        scalars = ("prefetch", "chunk_size", "augment_in", "on_error", "timeout", "start_method", "repeats", "memory_epochs")
        check({name: getattr(self, name) for name in scalars}, option, EXPERIMENT_RULES)
        check({"rank": self.rank, "world_size": self.world_size}, option, EXPERIMENT_RULES)
        check_shard(self.rank, self.world_size, option)
        if self.limit is not None:
            check({"limit": self.limit}, option, EXPERIMENT_RULES)
        for b in self.batch_sizes:
            check({"batch_size": b}, option)
        for w in self.workers:
            check({"workers": w}, option, EXPERIMENT_RULES)
        if not 0 < self.precision < 1:  # NaN too
            raise ConfigError(f"--precision {self.precision}: give the interval's ± as a share between 0 and 1, e.g. 3% or 0.03")
        if self.max_time is not None and not self.max_time > 0:
            raise ConfigError(f"--max-time {self.max_time}: give the seconds the command may take, more than 0, e.g. 180")
        if not self.wait_quiet >= 0:  # NaN too
            raise ConfigError(
                f"--wait-quiet {self.wait_quiet}: give the seconds to wait for a quiet machine, 0 or more (0: never wait)"
            )
        if self.if_busy not in get_args(IfBusy):
            raise ConfigError(f"--if-busy '{self.if_busy}': choose one of {', '.join(get_args(IfBusy))}")
        if self.cache not in CACHES:
            raise ConfigError(f"--cache '{self.cache}': choose one of {', '.join(CACHES)}")
        unknown = [name for name in self.loaders if name not in REGISTRY]
        if unknown:
            raise ConfigError(f"--loaders: unknown loader '{unknown[0]}'; choose from {', '.join(LOADERS)}")
        if self.kind in ("decode", "profile"):  # one loader: timed two ways (decode), or per decoder (profile)
            if len(self.loaders) != 1:
                raise ConfigError(f"--loader {','.join(self.loaders)}: name one loader, e.g. process")
        elif self.loaders[:1] != (BASELINE,) or len(self.loaders) < 2:
            raise ConfigError(
                f"--loaders {','.join(self.loaders)}: name the sequential baseline first and at least one other "
                "loader, e.g. sequential,process"
            )
        for name in ("start_method", "ray_address"):
            if getattr(self, name) is not None and not any(uses(loader, name) for loader in self.loaders):
                users = [loader for loader in LOADERS if uses(loader, name)]
                raise ConfigError(f"{option(name)} applies only to --loaders {','.join(users)}; add one or drop the option")

    @property
    def step(self) -> Step | None:
        return parse_step(self.step_ms, self.step_kind)

    @property
    def points(self) -> int:
        return len(self.pipelines) * len(self.workers) * len(self.batch_sizes)

    @property
    def auto(self) -> bool:
        """Rounds until each speedup is precise (--repeats auto), not a fixed count."""
        return self.repeats == AUTO

    @property
    def rounds(self) -> int:
        """The fixed count of rounds, or with --repeats auto the fewest."""
        return self.repeats or LEAST_ROUNDS

    def epochs_per_point(self) -> int:
        """Epochs a point takes at the fewest rounds (the progress bar's unit)."""
        timed = len(self.loaders) + (self.ceiling and self.step is None)  # the ceiling: one more side per round
        return timed * (self.rounds + 1) + len(self.loaders) * self.memory_epochs

    def spec(self, batch_size: int, workers: int) -> LoaderSpec:
        """The loaders' arguments at one point of the experiment."""
        return LoaderSpec(
            batch_size=batch_size,
            shuffle=self.shuffle,
            seed=self.seed,
            num_workers=workers,
            prefetch=self.prefetch,
            chunk_size=self.chunk_size,
            augment_in=self.augment_in,
            on_error=self.on_error,
            timeout=self.timeout,
            start_method=self.start_method,
            ray_address=self.ray_address,
            rank=self.rank,
            world_size=self.world_size,
            prefetch_epochs=self.prefetch_epochs,
        )

    def options(self) -> dict[str, Any]:
        """The options as a results file records them."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}
