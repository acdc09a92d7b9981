"""ImageFolder: a sorted, recursive scan of class folders, read as 3-channel 8-bit RGB (JPEGs by the chosen decoder)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from .decoders import DEFAULT, read_with, require
from .lists import LIST_SUFFIXES, class_indices, is_list, read_list

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


ROOT_CLASS = "."  # images directly under the root, not in a class folder


class ImageFolder:
    """Images under ``root``; the class of an image is its first-level subfolder.

    Paths and labels live in numpy arrays: a list of Python strings would be copied into every forked worker
    page by page as reference counts change.
    """

    def __init__(
        self, root: str | os.PathLike[str], *, limit: int | None = None, reduce_decode: bool = False, decoder: str = DEFAULT
    ) -> None:
        self.root = Path(root)
        self.reduce_decode = reduce_decode  # opt-in: decode JPEGs at 1/2, 1/4 or 1/8 scale when the pipeline allows
        self.decoder = require(decoder)  # the JPEG decoder (decoders.py): opencv, pillow or simplejpeg
        if not self.root.exists():
            raise DatasetError(
                f"inputs folder '{self.root}' does not exist; point `root` at a folder of images "
                "(one subfolder per class), or run `pdl inputs` to generate one"
            )
        if is_list(self.root):
            self._from_list(limit)
            return
        if not self.root.is_dir():
            raise DatasetError(
                f"inputs '{self.root}' is a file, not a folder; pass the folder that holds the images, or a list of "
                f"them ({', '.join(LIST_SUFFIXES)})"
            )
        if limit is not None and limit < 1:
            raise DatasetError(f"limit must be at least 1, got {limit}")
        files = scan(self.root)
        if not files:
            raise DatasetError(
                f"no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) found under '{self.root}'; "
                "point `root` at a folder of images"
            )
        if limit is not None:
            files = files[:limit]
        class_names = sorted({_class_of(rel) for rel in files})
        index = {name: i for i, name in enumerate(class_names)}
        self.classes: tuple[str, ...] = tuple(class_names)
        # bytes, not str: numpy stores str as 4 bytes a character, and this array is sent to every worker
        self.paths: np.ndarray = np.array([os.fsencode(self.root / rel) for rel in files])
        self.labels: np.ndarray = np.array([index[_class_of(rel)] for rel in files], dtype=np.int64)

    @classmethod
    def from_list(
        cls, path: str | os.PathLike[str], *, limit: int | None = None, reduce_decode: bool = False, decoder: str = DEFAULT
    ) -> ImageFolder:
        """The images a .csv/.tsv/.txt list names (see ``pdl.lists``); ``ImageFolder(path)`` does the same."""
        if not is_list(Path(path)):
            raise DatasetError(f"`root` '{path}': not a list file; pass a {', '.join(LIST_SUFFIXES)} file")
        return cls(path, limit=limit, reduce_decode=reduce_decode, decoder=decoder)

    def _from_list(self, limit: int | None) -> None:
        """Paths (a missing one is an unreadable image, as in a folder) and labels from the list file ``root``."""
        if limit is not None and limit < 1:
            raise DatasetError(f"limit must be at least 1, got {limit}")
        rows = read_list(self.root)
        if rows.labels is None and not any(p.lower().endswith(IMAGE_EXTENSIONS) for p in rows.paths):
            raise DatasetError(
                f"inputs '{self.root}' is a file, not a folder, and none of its lines names an image "
                f"({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}); pass a folder of images, or a list with one image path a line"
            )
        paths = rows.paths[:limit]
        if rows.labels is None:
            self.classes, labels = (ROOT_CLASS,), [0] * len(paths)
        else:
            self.classes, labels = class_indices(rows.labels[: len(paths)], self.root)
        self.paths = np.array([os.fsencode(p) for p in paths])
        self.labels = np.array(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        return read_with(self.decoder, self.path(i))[0]

    def read(self, i: int, need: tuple[int, int] | None = None) -> tuple[np.ndarray, float, float]:
        """Image ``i`` plus (read seconds, decode seconds), for loaders.

        ``need`` is the (height, width) the pipeline's first transform needs (``Pipeline.min_input_size``); it
        allows a reduced JPEG decode only when ``reduce_decode`` is on, and is ignored otherwise.
        """
        return read_with(self.decoder, self.path(i), need if self.reduce_decode else None)

    def read_as(self, *, reduce_decode: bool | None = None, decoder: str | None = None) -> ImageFolder:
        """The same files and labels (no rescan), read another way: with or without reduced JPEG decoding, or
        with another decoder. What ``pdl decode`` and ``pdl profile --loader`` time side by side."""
        other = copy.copy(self)
        if reduce_decode is not None:
            other.reduce_decode = reduce_decode
        if decoder is not None:
            other.decoder = require(decoder)
        return other

    def path(self, i: int) -> str:
        return os.fsdecode(self.paths[i])

    def __repr__(self) -> str:
        reduced = ", reduce_decode=True" if self.reduce_decode else ""
        decoder = f", decoder='{self.decoder}'" if self.decoder != DEFAULT else ""
        return f"ImageFolder('{self.root}', {len(self)} images, {len(self.classes)} classes{reduced}{decoder})"


def _class_of(rel: str) -> str:
    head, sep, _ = rel.partition("/")
    return head if sep else ROOT_CLASS


def scan(root: Path) -> list[str]:
    """Relative paths of image files below ``root``, sorted; hidden files and folders are skipped.

    Dangling symlinks with an image extension are kept: they are unreadable images, not missing ones.
    """
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = os.path.relpath(dirpath, root)
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(IMAGE_EXTENSIONS):
                continue
            found.append(name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/"))
    found.sort()
    return found
