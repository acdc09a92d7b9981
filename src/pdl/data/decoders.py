"""The JPEG decoder, a choice: OpenCV (the default), Pillow or simplejpeg. All three wrap libjpeg-turbo, with
different overheads and different ways of decoding at a reduced scale.

Only JPEGs go through the chosen decoder. Every other format, and every check made before decoding (a truncated
JPEG, a header over OpenCV's size limits: ``codec.check_decodable``), stays OpenCV's, so a choice changes how
JPEGs decode and nothing else. Each decoder applies the EXIF orientation, as OpenCV does, and decodes at the
scale ``codec.decode_scale`` chose (1, 2, 4 or 8), so for a given decoder every loader makes the same batches.
"""

from __future__ import annotations

import importlib.util
import io
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, ImageReadError, MissingDependencyError
from .bounds import REASON_CHARS, cut
from .codec import check_decodable, decode, decode_scale, is_jpeg, jpeg_markers, read_bytes

DEFAULT = "opencv"


@dataclass(frozen=True)
class Decoder:
    module: str | None  # what must import for it to work; None: always there
    extra: str | None  # pip install 'pdl[extra]'


# every one decodes JPEGs at 1/2, 1/4 or 1/8 scale too (--reduce-decode): cv2.imdecode's IMREAD_REDUCED flags,
# PIL.Image.draft, simplejpeg's min_factor
DECODERS: dict[str, Decoder] = {
    "opencv": Decoder(None, None),
    "pillow": Decoder("PIL", "pillow"),
    "simplejpeg": Decoder("simplejpeg", "simplejpeg"),
}
NAMES = tuple(DECODERS)


def check_decoder(name: str, option: str = "`decoder`") -> str:
    """``name`` if it is a decoder pdl knows; else a one-line ConfigError naming the choices."""
    if name not in DECODERS:
        raise ConfigError(f"{option} '{name}': unknown decoder; choose one of {', '.join(NAMES)}")
    return name


def missing(name: str) -> str | None:
    """The pip command that installs decoder ``name``'s package, if it is not installed; None when it is."""
    entry = DECODERS[check_decoder(name)]
    if entry.module is None or importlib.util.find_spec(entry.module) is not None:
        return None
    return f"pip install 'pdl[{entry.extra}]'"


def require(name: str, option: str = "`decoder`") -> str:
    """``name`` if it is known and installed; else one line: the choices, or the extra that installs it."""
    hint = missing(check_decoder(name, option))
    if hint is not None:
        raise MissingDependencyError(f"{option} {name}: the {name} decoder is not installed: {hint}")
    return name


# What a decoder holds at its peak, bytes per pixel of the header's size, counted against the decoded-size bound:
# OpenCV and simplejpeg decode straight into the RGB array (3); Pillow holds the source mode (a CMYK JPEG: 4),
# its RGB conversion (3) and, where numpy cannot share it, a copy (3).
PEAK_BYTES_PER_PIXEL = {"pillow": 10}


def decode_with(name: str, path: str, data: np.ndarray, need: tuple[int, int] | None = None) -> np.ndarray:
    """3-channel uint8 RGB, as ``codec.decode`` makes it, the JPEG decoded by ``name`` (see the module's note)."""
    if name == DEFAULT or not is_jpeg(data):
        return decode(path, data, need)
    check_decodable(path, data, PEAK_BYTES_PER_PIXEL.get(name, 3))
    try:
        image = _DECODE[name](data, decode_scale(data, need))
    except Exception as exc:  # whatever the library raises on a damaged file: this file's
        raise ImageReadError(path, f"cannot decode ({name}: {cut(f'{type(exc).__name__}: {exc}', REASON_CHARS)})") from None
    return orient(image, exif_orientation(data))


def read_with(name: str, path: str, need: tuple[int, int] | None = None) -> tuple[np.ndarray, float, float]:
    """Image ``path`` decoded by ``name``, plus (read seconds, decode seconds), for the stage breakdown."""
    t0 = time.perf_counter()
    data = read_bytes(path)
    t1 = time.perf_counter()
    image = decode_with(name, path, data, need)
    return image, t1 - t0, time.perf_counter() - t1


def _pillow(data: np.ndarray, scale: int) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(np.ravel(data).data)) as im:
        if scale > 1:  # draft picks the largest of 1/2, 1/4, 1/8 that keeps at least this size: exactly 1/scale
            im.draft("RGB", (max(1, im.width // scale), max(1, im.height // scale)))
        rgb = im if im.mode == "RGB" else im.convert("RGB")
        image = np.asarray(rgb)
    return image if image.flags.writeable else image.copy()


def _simplejpeg(data: np.ndarray, scale: int) -> np.ndarray:
    import simplejpeg

    if scale == 1:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=False)  # type: ignore[no-any-return]
    h, w = simplejpeg.decode_jpeg_header(data)[:2]
    # the one libjpeg-turbo factor m/8 that is at most 1/scale and keeps ceil(side/scale): 1/scale itself
    return simplejpeg.decode_jpeg(  # type: ignore[no-any-return]
        data, colorspace="RGB", strict=False, min_height=-(-h // scale), min_width=-(-w // scale), min_factor=scale
    )


_DECODE: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {"pillow": _pillow, "simplejpeg": _simplejpeg}


def exif_orientation(data: np.ndarray) -> int:
    """The EXIF orientation (1–8) a JPEG's APP1 segment states; 1 (as stored) when it states none."""
    raw = np.ravel(data).data
    for marker, i in jpeg_markers(raw):
        if marker in (0xDA, 0xD9):  # the scan starts (or the image ends): no header segment follows
            break
        length = raw[i + 2] << 8 | raw[i + 3]
        if marker == 0xE1 and bytes(raw[i + 4 : i + 10]) == b"Exif\0\0":
            return _tiff_orientation(bytes(raw[i + 10 : i + 2 + length]))
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
    for k in range(count):
        entry = ifd + 2 + 12 * k
        if entry + 10 > len(tiff):
            break
        tag, kind, _, value = struct.unpack(order + "HHIH", tiff[entry : entry + 10])
        if tag == 0x0112 and kind == 3:  # Orientation, a SHORT
            return value if 1 <= value <= 8 else 1
    return 1


def orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """``image`` as stored, turned the way EXIF ``orientation`` says it is meant to be seen."""
    if orientation <= 1 or orientation > 8:
        return image
    turns = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: a.swapaxes(0, 1)[:, ::-1],
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: a.swapaxes(0, 1)[::-1],
    }
    return np.ascontiguousarray(turns[orientation](image))
