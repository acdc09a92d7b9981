"""Loaders: sequential (baseline), process (the parallel loader), thread; torch and ray as references."""

from __future__ import annotations

from typing import Any

from ..dataset import ImageFolder
from ..errors import ConfigError
from ..pipeline import Pipeline
from .base import Batch, Loader, LoaderSpec
from .process import ParallelLoader, default_start_method
from .sequential import SequentialLoader
from .thread import ThreadLoader

LOADERS = ("sequential", "process", "process-pickle", "thread", "torch", "ray")


def make_loader(kind: str, dataset: ImageFolder, pipeline: Pipeline, spec: LoaderSpec, **extra: Any) -> Loader:
    """A loader by name, built from one spec, so every loader in a comparison gets the same arguments."""
    common = dict(batch_size=spec.batch_size, shuffle=spec.shuffle, seed=spec.seed, drop_last=spec.drop_last)
    options = dict(
        num_workers=spec.num_workers,
        prefetch=spec.prefetch,
        augment_in=spec.augment_in,
        on_error=spec.on_error,
        timeout=spec.timeout,
    )
    if kind == "sequential":
        return SequentialLoader(dataset, pipeline, **common, on_error=spec.on_error)
    if kind in ("process", "process-pickle"):  # process-pickle: batches pickled through the pipes, no ring
        return ParallelLoader(dataset, pipeline, **common, **options, shared_memory=kind == "process", **extra)
    if kind == "thread":
        return ThreadLoader(dataset, pipeline, **common, **options)
    if kind == "torch":
        from .torch_ref import TorchLoader

        return TorchLoader(dataset, pipeline, **common, **options, **extra)
    if kind == "ray":
        from .ray_ref import RayLoader

        return RayLoader(dataset, pipeline, **common, **options, **extra)
    raise ConfigError(f"--loaders: unknown loader '{kind}'; choose from {', '.join(LOADERS)}")


__all__ = [
    "LOADERS",
    "Batch",
    "Loader",
    "LoaderSpec",
    "ParallelLoader",
    "SequentialLoader",
    "ThreadLoader",
    "default_start_method",
    "make_loader",
]
