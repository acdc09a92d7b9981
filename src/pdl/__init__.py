"""pdl: a parallel prefetching image data loader, and the tool that measures what it buys you."""

from __future__ import annotations

from . import _env  # noqa: F401  (must run before numpy, OpenCV and albumentations load)
from ._version import __version__
from .data.codec import read_image
from .data.folder import ImageFolder
from .data.pipeline import Pipeline, load_pipeline
from .data.protocol import Dataset
from .errors import PdlError
from .loaders import Batch, LoaderSpec, ParallelLoader, SequentialLoader, ThreadLoader, make_loader

__all__ = [
    "Batch",
    "Dataset",
    "ImageFolder",
    "LoaderSpec",
    "ParallelLoader",
    "PdlError",
    "Pipeline",
    "SequentialLoader",
    "ThreadLoader",
    "__version__",
    "load_pipeline",
    "make_loader",
    "read_image",
]
