"""The dataset protocol every loader honours, and the one way loaders get an item, its label and its name.

Any object with ``__len__`` and ``__getitem__(i)`` returning an HWC uint8 image, or ``(image, label)``, is a
dataset; ``label(i)`` (a label without reading the image) and ``describe(i)`` (what error messages call item
``i``, e.g. its path) are optional. An ``ImageFolder`` whose ``__getitem__`` is not overridden keeps its own
timed path, split into the read and decode stages; any other dataset's ``__getitem__`` is timed whole, as the
read stage (decode stays 0). Whatever such a ``__getitem__`` raises becomes an ``ImageReadError`` naming the
item, so ``on_error="skip"`` skips it like an unreadable file.
"""

from __future__ import annotations

import pickle
import time
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError, ImageReadError
from .folder import ImageFolder

NO_LABEL = -1  # the label of an item whose dataset gives none


@runtime_checkable
class Dataset(Protocol):
    """What a loader needs: a length and items; ``label(i)`` and ``describe(i)`` are used when present."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Any: ...


def uses_timed_path(dataset: Any) -> bool:
    """True for an ImageFolder (or subclass) that keeps ImageFolder's own ``__getitem__``: read and decode timed apart."""
    return isinstance(dataset, ImageFolder) and type(dataset).__getitem__ is ImageFolder.__getitem__


def describe(dataset: Any, i: int) -> str:
    """What messages call item ``i``: ``describe(i)``, else its path, else ``item i``."""
    i = int(i)
    if callable(getattr(dataset, "describe", None)):
        try:
            return str(dataset.describe(i))
        except Exception:
            pass
    if callable(getattr(dataset, "path", None)):
        try:
            return str(dataset.path(i))
        except Exception:
            pass
    return f"item {i}"


def label_of(dataset: Any, i: int) -> int:
    """Item ``i``'s label without reading it: ``label(i)``, else the ``labels`` array, else ``NO_LABEL``."""
    if callable(getattr(dataset, "label", None)):
        return int(dataset.label(int(i)))
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        return int(labels[int(i)])
    return NO_LABEL


def labels_of(dataset: Any, indices: np.ndarray) -> np.ndarray:
    """The labels of ``indices``, as ``label_of`` finds them (one array lookup for an ImageFolder)."""
    labels = getattr(dataset, "labels", None)
    if not callable(getattr(dataset, "label", None)) and isinstance(labels, np.ndarray):
        return labels[np.asarray(indices, dtype=np.int64)]
    return np.array([label_of(dataset, i) for i in indices], dtype=np.int64)


def get_item(dataset: Any, i: int) -> tuple[np.ndarray, int | None, float]:
    """``dataset[i]`` through the protocol: (image, its label or None when the item gave none, seconds).

    Anything ``__getitem__`` raises, or an item that is not an HWC uint8 image, is an ImageReadError naming it.
    """
    t0 = time.perf_counter()
    try:
        item = dataset[int(i)]
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(
            describe(dataset, i), f"{type(exc).__name__} in {type(dataset).__name__}.__getitem__: {exc}"
        ) from None
    seconds = time.perf_counter() - t0
    label: int | None = None
    if isinstance(item, tuple) and len(item) == 2:
        item, raw_label = item
        try:
            label = int(raw_label)
        except (TypeError, ValueError):
            raise ImageReadError(
                describe(dataset, i), f"{type(dataset).__name__}.__getitem__ gave the label {raw_label!r}: return an int"
            ) from None
    if not isinstance(item, np.ndarray) or item.dtype != np.uint8 or item.ndim != 3:
        what = f"a {item.dtype} array of shape {item.shape}" if isinstance(item, np.ndarray) else type(item).__name__
        raise ImageReadError(
            describe(dataset, i),
            f"{type(dataset).__name__}.__getitem__ returned {what}: return an HWC uint8 image, or (image, label)",
        )
    return item, label, seconds


def sample_image(dataset: Any, i: int) -> np.ndarray:
    """Item ``i``'s image, whichever path the dataset uses (for sizing buffers)."""
    if uses_timed_path(dataset):
        image: np.ndarray = dataset[int(i)]
        return image
    return get_item(dataset, i)[0]


def check_picklable(dataset: Any, start_method: str) -> None:
    """Workers started by spawn or forkserver get the dataset pickled: say plainly when it cannot be."""
    if start_method == "fork":
        return  # inherited as it is
    try:
        pickle.dumps(dataset)
    except Exception as exc:
        raise ConfigError(
            f"the dataset {type(dataset).__name__} cannot be sent to '{start_method}' workers ({type(exc).__name__}: "
            f"{exc}); define its class at module level and keep no open files or locks in it, or use `start_method` fork"
        ) from None
