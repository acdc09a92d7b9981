"""ImageFolder: a sorted, recursive scan of class folders, read with OpenCV as 3-channel 8-bit RGB."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from ._env import quiet_opencv
from .errors import DatasetError, ImageReadError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
ROOT_CLASS = "."  # images directly under the root, not in a class folder

quiet_opencv()

_COLOR_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


def read_bytes(path: str) -> np.ndarray:
    """The file's bytes; every way a file can fail to be there becomes an ImageReadError naming it."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        reason = "dangling symlink" if os.path.islink(path) else "file not found"
        raise ImageReadError(path, f"cannot read ({reason})") from None
    except PermissionError:
        raise ImageReadError(path, "cannot read (permission denied)") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read ({exc.strerror or exc})") from None
    if data.size == 0:
        raise ImageReadError(path, "cannot decode (empty file)")
    return data


def _jpeg_truncated(data: np.ndarray) -> bool:
    """OpenCV decodes a truncated JPEG without error (grey fill), so check for the end-of-image marker.

    In entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so an EOI (FF D9) after the last
    start-of-scan (FF DA) is the image's own end; an EXIF thumbnail's markers come before the main scan.
    """
    raw = data.tobytes()
    sos = raw.rfind(b"\xff\xda")
    return sos < 0 or raw.find(b"\xff\xd9", sos) < 0


def decode(path: str, data: np.ndarray) -> np.ndarray:
    if data.size >= 3 and data[0] == 0xFF and data[1] == 0xD8 and data[2] == 0xFF and _jpeg_truncated(data):
        raise ImageReadError(path, "cannot decode (truncated JPEG: no end-of-image marker)")
    if _COLOR_RGB is not None:
        image = cv2.imdecode(data, _COLOR_RGB)
    else:  # OpenCV < 4.11
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        image = None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image is None:
        raise ImageReadError(path, "cannot decode (not an image, or a format OpenCV cannot read)")
    return image


def read_image(path: str) -> np.ndarray:
    """3-channel uint8 RGB whatever the file holds (grayscale, alpha and 16-bit are converted by OpenCV)."""
    return decode(path, read_bytes(path))


def read_image_timed(path: str) -> tuple[np.ndarray, float, float]:
    """The image plus (read seconds, decode seconds), for the stage breakdown."""
    t0 = time.perf_counter()
    data = read_bytes(path)
    t1 = time.perf_counter()
    image = decode(path, data)
    return image, t1 - t0, time.perf_counter() - t1


class ImageFolder:
    """Images under ``root``; the class of an image is its first-level subfolder.

    Paths and labels live in numpy arrays: a list of Python strings would be copied into every forked worker
    page by page as reference counts change.
    """

    def __init__(self, root: str | os.PathLike[str], *, limit: int | None = None) -> None:
        self.root = Path(root)
        if not self.root.exists():
            raise DatasetError(
                f"inputs folder '{self.root}' does not exist; pass --inputs with a folder of images "
                "(one subfolder per class), or run `pdl inputs` to generate one"
            )
        if not self.root.is_dir():
            raise DatasetError(f"inputs '{self.root}' is a file, not a folder; pass the folder that holds the images")
        if limit is not None and limit < 1:
            raise DatasetError(f"limit must be at least 1, got {limit}")
        files = scan(self.root)
        if not files:
            raise DatasetError(
                f"no images ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) found under '{self.root}'; "
                "point --inputs at a folder of images"
            )
        if limit is not None:
            files = files[:limit]
        class_names = sorted({_class_of(rel) for rel in files})
        index = {name: i for i, name in enumerate(class_names)}
        self.classes: tuple[str, ...] = tuple(class_names)
        # bytes, not str: numpy stores str as 4 bytes a character, and this array is sent to every worker
        self.paths: np.ndarray = np.array([os.fsencode(self.root / rel) for rel in files])
        self.labels: np.ndarray = np.array([index[_class_of(rel)] for rel in files], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        return read_image(self.path(i))

    def path(self, i: int) -> str:
        return os.fsdecode(self.paths[i])

    def __repr__(self) -> str:
        return f"ImageFolder('{self.root}', {len(self)} images, {len(self.classes)} classes)"


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
