"""`pdl profile`: what each transform of a pipeline costs per image on these images, with read and decode beside it.

Sequential, under the thread settings the loaders use (``runner.start_results`` applies them; ``profile_pipeline``
does too), on the images and per-image seeds of a loader's first epoch (``batching.read_each``, ``image_seed``).
Every image, every repeat: read and decode it once, then run it through the plain pipeline (timed whole, as the
loaders run it) and through an instrumented copy (``instrument.py``: each transform timed inside it), the two in
an order that alternates image by image. The transforms' times add up to the whole but for albumentations' own
work between transforms (its checks and random state per image) and the timers themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from .._env import keep_freed_memory, limit_threads
from ..data.decoders import DEFAULT
from ..data.pipeline import Pipeline
from ..data.protocol import Dataset, uses_timed_path
from ..errors import ConfigError, worker_error
from ..loaders.batching import StageTimes, image_seed, read_each
from ..loaders.spec import OnError
from .decoder_speed import decoder_speeds, jpegs, loader_per_decoder
from .instrument import InstrumentationError, Instrumented, instrument, walk
from .outcomes import Profiled, TransformCost
from .records import ResultSet
from .runner import Plan, start_results
from .step import Clock
from .timing import Progress

EPOCH = 0  # the seeds of a loader's first epoch
# The transforms' timed sum below this share of the pipeline timed whole: the meters missed the pipeline's work.
# Loose on purpose: under albumentations 2.0.8 the sum is 70-95% of the whole; under AlbumentationsX its own work
# between transforms (a deep copy of the random state per image, its checks) leaves 20-45% on small images.
MEASURED_FLOOR = 0.05


def _one_pass(
    dataset: Dataset, pipeline: Pipeline, metered: Instrumented, seed: int, on_error: OnError, r: int, clock: Clock
) -> tuple[StageTimes, float, int, bool]:
    """Every image once: (read and decode seconds, the whole pipeline's seconds, images, outputs all equal)."""
    times, whole, n, same = StageTimes(), 0.0, 0, True
    for k in range(len(dataset)):
        for i, path, image in read_each(dataset, np.array([k]), on_error, times, [], [], pipeline.min_input_size):
            s = image_seed(seed, EPOCH, i)
            try:
                for plain in (True, False) if (k + r) % 2 == 0 else (False, True):
                    if plain:
                        t0 = clock()
                        out = pipeline(image, s)
                        whole += clock() - t0
                    else:
                        metered_out = metered(image, s)
            except Exception as exc:
                raise worker_error(exc, path, "augmenting") from None
            same = same and np.array_equal(out, metered_out)
            n += 1
    return times, whole, n, same


def profile_pipeline(
    dataset: Dataset,
    pipeline: Pipeline,
    repeats: int = 3,
    seed: int = 0,
    on_error: OnError = "fail",
    clock: Clock = time.perf_counter,
    progress: Progress | None = None,
) -> Profiled:
    """Each transform's milliseconds per image (each repeat), how often it ran, read, decode and the whole."""
    tick = progress or (lambda _msg: None)
    limit_threads()
    metered = instrument(pipeline, clock)
    _warm_up(dataset, pipeline, metered, seed, on_error)
    tick("warm-up")
    per: list[tuple[float, float, float]] = []
    costs: dict[str, list[float]] = {m.where: [] for m in walk(metered.meters)}
    ran: dict[str, int] = {}
    same, n = True, 0
    for r in range(repeats):
        metered.reset()
        times, whole, n, same_here = _one_pass(dataset, pipeline, metered, seed, on_error, r, clock)
        if n == 0:
            raise ConfigError("every image was skipped as unreadable: nothing to profile; check --inputs")
        same = same and same_here
        check_measured(metered, whole, n)
        per.append((times.read / n * 1e3, times.decode / n * 1e3, whole / n * 1e3))
        for m in walk(metered.meters):
            costs[m.where].append(m.seconds / n * 1e3)
            ran.setdefault(m.where, m.ran)
        tick(f"repeat {r + 1}")
    transforms = tuple(
        TransformCost(m.name, m.where, m.depth, m.p, ran[m.where], tuple(costs[m.where]), m.group) for m in walk(metered.meters)
    )
    read, decode, augment = (tuple(x[j] for x in per) for j in range(3))
    timed = uses_timed_path(dataset)
    return Profiled(
        pipeline=pipeline.name,
        images=n,
        repeats=repeats,
        read_ms=read,
        decode_ms=decode,
        augment_ms=augment,
        transforms=transforms,
        same_output=same,
        decoder=str(getattr(dataset, "decoder", DEFAULT)) if timed else DEFAULT,
        timed_whole=not timed,
    )


def check_measured(metered: Instrumented, whole: float, n: int) -> None:
    """Refuse, in one line naming the library, meters that missed the pipeline while it ran: an instrumentation
    that does not take times nothing (and still makes the same output, so that check alone cannot see it).
    Missed: a transform counted as applied but never timed; one that applies to every image never counted; or
    the transforms' sum below ``MEASURED_FLOOR`` of the whole."""
    if whole <= 0 or n == 0:
        return
    leaves = [m for m in walk(metered.meters) if not m.group]
    timed = sum(m.seconds for m in leaves)
    every_image = float(getattr(metered.pipeline.compose, "p", 1.0)) >= 1
    untimed = next((m for m in leaves if m.ran > 0 and m.seconds <= 0), None)
    uncounted = next((m for m in leaves if every_image and m.depth == 0 and m.p >= 1 and m.ran == 0), None)
    if timed > 0 and untimed is not None:
        what = f"timed nothing for {untimed.name} ({untimed.where}), which applied to {untimed.ran} images"
    elif timed > 0 and uncounted is not None:
        what = f"counted no application of {uncounted.name} ({uncounted.where}), which applies to every image"
    elif timed < MEASURED_FLOOR * whole:
        what = f"timed {timed / n * 1e3:.3f} ms per image of the {whole / n * 1e3:.3f} ms the pipeline took whole ({timed / whole:.0%})"
    else:
        return
    name, version = metered.library
    raise InstrumentationError(
        f"pdl profile cannot instrument {name} {version}: its meters {what}, so the per-transform times would be wrong; "
        'profile under albumentations 2.0.8 (pip install -e ".[albumentations]" in another venv), and report this version'
    )


def _warm_up(dataset: Dataset, pipeline: Pipeline, metered: Instrumented, seed: int, on_error: OnError) -> None:
    """The first images through both pipelines, untimed: albumentations built, first-call costs paid."""
    first = np.arange(min(2, len(dataset)))
    for i, path, image in read_each(dataset, first, on_error, StageTimes(), [], [], pipeline.min_input_size):
        try:
            pipeline(image, image_seed(seed, EPOCH, i))
            metered(image, image_seed(seed, EPOCH, i))
        except Exception as exc:
            raise worker_error(exc, path, "augmenting") from None


def ticks(repeats: int, decoders: bool, loaders: int) -> int:
    """Progress ticks: warm-up and repeats; decoder rounds; each loader's warm-up and epochs."""
    return 1 + repeats + (repeats if decoders else 0) + loaders * (repeats + 1)


def profile(
    plan: Plan,
    decoders: tuple[str, ...],
    loader: str | None,
    on_save: Callable[[ResultSet], None],
    progress: Progress | None = None,
) -> ResultSet:
    """`pdl profile`: the pipeline's transforms; with ``decoders``, the decoders (and ``loader`` with each)."""
    exp = plan.exp
    [pipeline] = plan.pipelines
    results = start_results(plan, "profile")  # the loaders' thread settings, applied here too
    keep_freed_memory()
    found = profile_pipeline(plan.dataset, pipeline, exp.rounds, exp.seed, exp.on_error, progress=progress)
    results = replace(results, profiled=found)
    on_save(results)
    if decoders:
        files = jpegs(plan.dataset)
        speeds = decoder_speeds(files, decoders, pipeline.min_input_size, exp.rounds, progress=progress)
        results = replace(results, profiled=replace(found, decoders=speeds))
        on_save(results)
        if loader is not None:
            spec = exp.spec(exp.batch_sizes[0], exp.workers[0])
            points = loader_per_decoder(plan.dataset, pipeline, loader, spec, decoders, exp.rounds, progress=progress)
            results = replace(results, points=tuple(points))
    results = replace(results, complete=True)
    on_save(results)
    return results
