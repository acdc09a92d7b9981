"""Each transform of a pipeline timed inside the pipeline as it runs, and counted when it applies.

``instrument(pipeline)`` returns a copy of the pipeline whose albumentations objects (each transform, and each
branch of ``OneOf``/``SomeOf``/``Sequential``, at any depth) report into meters, in the way the installed
library calls them:

- albumentations 2.0.8: a parent calls each child's ``__call__``, a type slot, so each object is given a subclass
  of its own class that times ``__call__`` and counts ``apply_with_params`` (called only when the draw applied it).
- AlbumentationsX: a parent never calls ``__call__``; it hands its invocation (the random streams of one call) to
  each leaf's ``apply_in_invocation`` (``apply_without_invocation`` for a leaf that needs none), and runs
  ``OneOf``/``SomeOf`` itself through handlers chosen by the node's exact type; and it picks its fast route by
  checking that a leaf's class does not override these methods. A subclass would go untimed (the zeros issue #35
  found) or take another route, so each leaf gets instance attributes instead: its ``apply_in_invocation`` and
  ``apply_without_invocation`` timed, ``_apply_sampled`` (run only when the draw applied it) counted; its class
  and so its route stay the library's. A group's time there is the sum of its branches'.

Either way the same objects draw the same random numbers in the same order, so with the same seed the copy makes
exactly the plain pipeline's output (the profile checks it, image by image, and that the meters measured the
pipeline at all). The plain pipeline is left alone: it is what the loaders run, and what the profile times whole.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .._augment import augmentation_library
from ..data.pipeline import Pipeline
from ..errors import PdlError
from .step import Clock


class InstrumentationError(PdlError):
    """The installed augmentation library runs its transforms in a way the profile cannot time."""


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
    last_image: int = -1  # a group (AlbumentationsX): the image it last counted, so a branch counts it once

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
    image: list[int] = field(default_factory=lambda: [0])  # images run through it so far (shared with the meters)
    library: tuple[str, str] = ("albumentations", "")  # (distribution, version): the library it instruments

    def __call__(self, image: Any, seed: int) -> Any:
        self.image[0] += 1
        return self.pipeline(image, seed)

    def reset(self) -> None:
        for m in self.meters:
            m.reset()


def instrument(pipeline: Pipeline, clock: Clock = time.perf_counter) -> Instrumented:
    """A copy of ``pipeline`` (its own albumentations objects) with every transform metered."""
    mine = copy.copy(pipeline)  # Pipeline.__copy__: its own Compose, built from the spec
    image = [0]
    meters = _meter_children(mine.compose, "", 0, clock, _calls_invocations(), image, ())
    return Instrumented(mine, meters, image, augmentation_library())


def _calls_invocations() -> bool:
    """Whether the installed library runs a leaf through ``apply_in_invocation`` (AlbumentationsX), not ``__call__``."""
    from albumentations.core.transforms_interface import BasicTransform

    return callable(getattr(BasicTransform, "apply_in_invocation", None))


def _meter_children(
    compose: Any, where: str, depth: int, clock: Clock, invocations: bool, image: list[int], groups: tuple[Meter, ...]
) -> list[Meter]:
    from albumentations.core.composition import BaseCompose

    meters = []
    for i, t in enumerate(compose.transforms):
        here = f"{where}transforms[{i}]"
        group = isinstance(t, BaseCompose)
        meter = Meter(type(t).__name__, here, depth, float(getattr(t, "p", 1.0)), group)
        if group:
            meter.children = _meter_children(t, f"{here}.", depth + 1, clock, invocations, image, (*groups, meter))
        if not invocations:
            t._pdl_meter, t._pdl_clock = meter, clock
            t.__class__ = _timed_class(type(t), group)
        elif not group:
            _meter_leaf(t, meter, (*groups, meter), clock, image)
        meters.append(meter)
    return meters


def _meter_leaf(leaf: Any, meter: Meter, chain: tuple[Meter, ...], clock: Clock, image: list[int]) -> None:
    """AlbumentationsX: time and count one leaf through attributes of the instance (its class, and so the
    library's choice of route, untouched). ``chain``: the groups holding it, outermost first, then its own meter."""

    def timed(method: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            out = method(*args, **kwargs)
            spent = clock() - t0
            for m in chain:  # a group's time: its branches'
                m.seconds += spent
            return out

        return run

    apply_sampled = leaf._apply_sampled

    def counted(*args: Any, **kwargs: Any) -> Any:
        meter.ran += 1  # called only when the leaf's random draw applied it
        for g in chain[:-1]:
            if g.last_image != image[0]:
                g.ran, g.last_image = g.ran + 1, image[0]
        return apply_sampled(*args, **kwargs)

    leaf.apply_in_invocation = timed(leaf.apply_in_invocation)
    leaf.apply_without_invocation = timed(leaf.apply_without_invocation)
    leaf._apply_sampled = counted


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
