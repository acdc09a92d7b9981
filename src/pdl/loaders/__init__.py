"""The loaders, by name: one registry line each. A new loader is one file plus one line here.

``make_loader(name, dataset, pipeline, spec)`` builds any of them from one ``LoaderSpec``, so every loader in a
comparison gets the same arguments. Optional loaders are imported only when asked for; a missing extra is
one line naming the pip command that installs it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from typing import Any

from ..data.pipeline import Pipeline
from ..data.protocol import Dataset
from ..errors import ConfigError, MissingDependencyError
from .base import Loader
from .batching import Batch
from .process import ParallelLoader
from .sequential import SequentialLoader
from .spec import LoaderSpec
from .thread import ThreadLoader

BASELINE = SequentialLoader.name  # the loader every speed-up is measured against
CEILING = "ceiling"  # N copies of the sequential loop at once: what the machine can give (loaders/ceiling.py)


@dataclass(frozen=True)
class Entry:
    """Where a loader's class lives, which ``LoaderSpec`` options beyond the common ones it uses, and the
    optional extra (``pip install 'pdl[extra]'``) it needs."""

    target: str  # "module:Class", imported on first use
    options: tuple[str, ...] = ()
    extra: str | None = None
    summary: str = ""
    module: str | None = None  # what the extra installs, to look for (default: the extra's name)
    python: tuple[int, int] | None = None  # the oldest Python the peer runs on, where newer than pdl's
    equivalent: bool = False  # its own operators on an equivalent pipeline: batches close to pdl's, never equal


REGISTRY: dict[str, Entry] = {
    BASELINE: Entry("pdl.loaders.sequential:SequentialLoader", summary="the baseline: one batch at a time"),
    "process": Entry("pdl.loaders.process:ParallelLoader", ("start_method",), summary="pdl: worker processes + ring"),
    "process-pickle": Entry("pdl.loaders.process:PickledParallelLoader", ("start_method",), summary="pdl, batches pickled"),
    "thread": Entry("pdl.loaders.thread:ThreadLoader", summary="pdl: a thread pool"),
    CEILING: Entry("pdl.loaders.ceiling:CeilingLoader", ("start_method",), summary="N copies of the sequential loop: the bound"),
    "torch": Entry("pdl.loaders.peers.torch:TorchLoader", ("start_method",), "torch", "PyTorch's DataLoader"),
    "ray": Entry("pdl.loaders.ray:RayLoader", ("ray_address",), "ray", "Ray actors, on one machine or a cluster"),
    "report": Entry("pdl.loaders.peers.seed_report:ReportLoader", ("start_method",), summary="the seed report's DataLoaderPar"),
    "batchup": Entry("pdl.loaders.peers.batchup:BatchUpLoader", (), "batchup", "BatchUp's WorkerProcessPool"),
    "batchup-thread": Entry("pdl.loaders.peers.batchup:BatchUpThreadLoader", (), "batchup", "BatchUp's WorkerThreadPool"),
    "spdl": Entry("pdl.loaders.peers.spdl:SpdlLoader", (), "spdl", "SPDL's Pipeline, threads"),
    "spdl-process": Entry("pdl.loaders.peers.spdl:SpdlProcessLoader", ("start_method",), "spdl", "SPDL's Pipeline, processes"),
    "torchdata": Entry("pdl.loaders.peers.torchdata:TorchdataLoader", (), "torchdata", "torchdata.nodes, processes"),
    "grain": Entry("pdl.loaders.peers.grain:GrainLoader", (), "grain", "Grain's DataLoader, processes", python=(3, 11)),
    "tfdata": Entry("pdl.loaders.peers.tfdata:TfDataLoader", (), "tfdata", "tf.data, threads", module="tensorflow"),
    "dali": Entry(
        "pdl.loaders.peers.dali:DaliLoader",
        (),
        "dali",
        "DALI's CPU operators, equivalent work",
        module="nvidia.dali",
        equivalent=True,
    ),
}
LOADERS = tuple(REGISTRY)
SPEC_OPTIONS = frozenset(option for entry in REGISTRY.values() for option in entry.options)  # loader-specific


def loader_class(name: str) -> type[Loader]:
    """The class registered as ``name``; an unknown name or a missing extra is a one-line error."""
    entry = REGISTRY.get(name)
    if entry is None:
        raise ConfigError(f"`loaders`: unknown loader '{name}'; choose from {', '.join(LOADERS)}")
    module, _, cls = entry.target.partition(":")
    if entry.python is not None and sys.version_info < entry.python:
        need = ".".join(map(str, entry.python))
        raise MissingDependencyError(
            f"the {name} loader needs Python {need} or newer (its '{entry.extra}' extra does); this is {sys.version_info.major}.{sys.version_info.minor}"
        )
    try:
        found: type[Loader] = getattr(importlib.import_module(module), cls)
    except ImportError as exc:
        if entry.extra is None:
            raise
        raise MissingDependencyError(
            f"the {name} loader needs the '{entry.extra}' extra ({exc.name or exc}): pip install 'pdl[{entry.extra}]'"
        ) from None
    return found


def installed() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the loaders that can run here, the ones whose extra is missing), each in registry order: what
    ``--loaders all`` means."""
    present: list[str] = []
    missing: list[str] = []
    for name, entry in REGISTRY.items():
        try:
            ok = entry.extra is None or importlib.util.find_spec(entry.module or entry.extra) is not None
        except (ImportError, ValueError):
            ok = False
        if ok:
            try:
                loader_class(name)
            except MissingDependencyError:
                ok = False
        (present if ok else missing).append(name)
    return tuple(present), tuple(missing)


def make_loader(name: str, dataset: Dataset, pipeline: Pipeline, spec: LoaderSpec | None = None, **options: Any) -> Loader:
    """A loader by name, built from one spec (``options``, fields of ``LoaderSpec``, override the spec's)."""
    return loader_class(name)(dataset, pipeline, spec, **options)


def equivalent(name: str) -> bool:
    """Whether loader ``name`` runs its own operators on an equivalent pipeline (DALI): its batches are close to
    pdl's, never equal, and the tables say "equivalent" where others say whether they are the same."""
    entry = REGISTRY.get(name)
    return entry is not None and entry.equivalent


def uses(name: str, option: str) -> bool:
    """Whether loader ``name`` uses the loader-specific ``option`` (``start_method``, ``ray_address``)."""
    entry = REGISTRY.get(name)
    return entry is not None and option in entry.options


__all__ = [
    "LOADERS",
    "REGISTRY",
    "Batch",
    "Loader",
    "LoaderSpec",
    "ParallelLoader",
    "SequentialLoader",
    "ThreadLoader",
    "equivalent",
    "installed",
    "loader_class",
    "make_loader",
    "uses",
]
