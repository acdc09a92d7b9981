"""Each transform of a pipeline timed inside the pipeline as it runs, and counted when it applies.

``instrument(pipeline)`` returns a copy of the pipeline whose albumentations objects (each transform, and each
branch of ``OneOf``/``SomeOf``/``Sequential``, at any depth) are given a subclass of their own class that times
its ``__call__`` and counts its applications: the same objects draw the same random numbers in the same order,
so with the same seed the copy makes exactly the plain pipeline's output (the profile checks it, image by image).
The plain pipeline is left alone: it is what the loaders run, and what the profile times whole.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..data.pipeline import Pipeline
from .step import Clock


@dataclass
class Meter:
    """One transform's running totals; ``children`` are a group's branches."""

    name: str
    where: str
    depth: int
    p: float
    group: bool
    seconds: float = 0.0
    ran: int = 0  # images it applied to (a group: images on which any of its branches applied)
    children: list[Meter] = field(default_factory=list)

    def applications(self) -> int:
        return sum(c.applications() for c in self.children) if self.group else self.ran

    def reset(self) -> None:
        for m in walk([self]):
            m.seconds, m.ran = 0.0, 0


def walk(meters: list[Meter]) -> Iterator[Meter]:
    """Every meter, in pipeline order, each group before its branches."""
    for m in meters:
        yield m
        yield from walk(m.children)


@dataclass
class Instrumented:
    """A pipeline whose transforms report into ``meters`` (the top level, in order) as it runs."""

    pipeline: Pipeline
    meters: list[Meter]

    def __call__(self, image: Any, seed: int) -> Any:
        return self.pipeline(image, seed)

    def reset(self) -> None:
        for m in self.meters:
            m.reset()


def instrument(pipeline: Pipeline, clock: Clock = time.perf_counter) -> Instrumented:
    """A copy of ``pipeline`` (its own albumentations objects) with every transform metered."""
    mine = copy.copy(pipeline)  # Pipeline.__copy__: its own Compose, built from the spec
    return Instrumented(mine, _meter_children(mine.compose, "", 0, clock))


def _meter_children(compose: Any, where: str, depth: int, clock: Clock) -> list[Meter]:
    from albumentations.core.composition import BaseCompose

    meters = []
    for i, t in enumerate(compose.transforms):
        here = f"{where}transforms[{i}]"
        group = isinstance(t, BaseCompose)
        meter = Meter(type(t).__name__, here, depth, float(getattr(t, "p", 1.0)), group)
        if group:
            meter.children = _meter_children(t, f"{here}.", depth + 1, clock)
        t._pdl_meter, t._pdl_clock = meter, clock
        t.__class__ = _timed_class(type(t), group)
        meters.append(meter)
    return meters


_CLASSES: dict[tuple[type, bool], type] = {}


def _timed_class(cls: type, group: bool) -> type:
    """``cls`` with a timed ``__call__`` (and, for a transform, a counted ``apply_with_params``)."""
    key = (cls, group)
    if key in _CLASSES:
        return _CLASSES[key]
    base_call = cls.__call__

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
        meter: Meter = self._pdl_meter
        before = meter.applications() if group else 0
        t0 = self._pdl_clock()
        out = base_call(self, *args, **kwargs)
        meter.seconds += self._pdl_clock() - t0
        if group and meter.applications() > before:
            meter.ran += 1
        return out

    body: dict[str, Any] = {"__call__": __call__}
    if not group:
        base_apply = cls.apply_with_params  # type: ignore[attr-defined]

        def apply_with_params(self: Any, params: Any, *args: Any, **kwargs: Any) -> Any:
            self._pdl_meter.ran += 1  # called only when the transform's random draw applied it
            return base_apply(self, params, *args, **kwargs)

        body["apply_with_params"] = apply_with_params
    made = type(f"Timed{cls.__name__}", (cls,), body)
    _unregister(made)
    _CLASSES[key] = made
    return made


def _unregister(made: type) -> None:
    """albumentations registers every subclass by name for deserialising; a timed one must never be found there."""
    from albumentations.core import serialization

    for registry in (serialization.SERIALIZABLE_REGISTRY, serialization.NON_SERIALIZABLE_REGISTRY):
        for name in [n for n, c in registry.items() if c is made]:
            del registry[name]
