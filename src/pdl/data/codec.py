"""Image bytes → pixels: reading files, header checks (size limits, truncated JPEGs), OpenCV decoding at full or reduced scale."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import cv2
import numpy as np

from .._env import quiet_opencv
from ..errors import ImageReadError
from .bounds import MAX_DECODED_ENV, REASON_CHARS, cut, max_decoded_bytes

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
    except ValueError:  # a NUL byte in the path (from a list file): no file has that name
        raise ImageReadError(cut(repr(path)), "cannot read (a NUL byte in the path); fix the path") from None
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


def is_jpeg(data: np.ndarray) -> bool:
    """Whether the bytes start as a JPEG does (its start-of-image marker)."""
    return bytes(np.ravel(data[:3])) == b"\xff\xd8\xff"


# SOF0–SOF15 carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frames
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


_NO_LENGTH = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn and TEM stand alone; every other marker has a length


def jpeg_markers(raw: memoryview) -> Iterator[tuple[int, int]]:
    """(marker, offset of its 0xFF) of each segment of a JPEG's header, in order, from the one after
    start-of-image; stand-alone markers and fill bytes are stepped over. Stops where sync is lost (no marker
    where one must be) or the bytes end; the caller stops at start-of-scan (0xDA), after which data follows."""
    i, n = 2, len(raw)
    while i + 4 <= n:
        if raw[i] != 0xFF:
            return  # lost sync: not a marker where one must be
        marker = raw[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in _NO_LENGTH:
            i += 2
            continue
        yield marker, i
        i += 2 + (raw[i + 2] << 8 | raw[i + 3])


def jpeg_size(data: np.ndarray) -> tuple[int, int] | None:
    """(height, width) from a JPEG's start-of-frame marker, without decoding; None if not a JPEG or not found.

    This is the size as stored: an EXIF orientation that OpenCV applies on decode may swap the two.
    """
    if not is_jpeg(data):
        return None
    raw = np.ravel(data).data  # a memoryview, no copy: only the few marker headers before the frame are read
    for marker, i in jpeg_markers(raw):
        if marker == 0xDA:  # start of scan before any frame header
            return None
        if marker in _SOF:
            if i + 9 > len(raw):
                return None
            h, w = raw[i + 5] << 8 | raw[i + 6], raw[i + 7] << 8 | raw[i + 8]
            return (h, w) if h and w else None  # height 0: defined later by a DNL marker
    return None


# OpenCV's own limits on a decoded image (imgcodecs/loadsave.cpp), each overridable by its environment variable
_LIMITS = (
    ("OPENCV_IO_MAX_IMAGE_WIDTH", 1 << 20),
    ("OPENCV_IO_MAX_IMAGE_HEIGHT", 1 << 20),
    ("OPENCV_IO_MAX_IMAGE_PIXELS", 1 << 30),
)


def _limit(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _power(n: int) -> str:
    return f"2^{n.bit_length() - 1}" if n > 0 and n & (n - 1) == 0 else f"{n:,}"


def header_size(data: np.ndarray) -> tuple[int, int] | None:
    """(height, width) as the header of a JPEG, PNG, BMP, GIF or extended WebP claims it, read from a few
    bytes without decoding; None for other formats or a header too short to tell."""
    size = jpeg_size(data)
    if size is not None:
        return size
    head = bytes(np.ravel(data[:32]))
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 24:
        w, h = struct.unpack(">II", head[16:24])
        return h, w
    if head.startswith(b"BM") and len(head) >= 26:
        (dib,) = struct.unpack("<I", head[14:18])
        if dib == 12:  # BITMAPCOREHEADER: 16-bit sides
            w, h = struct.unpack("<HH", head[18:22])
        else:
            w, h = struct.unpack("<ii", head[18:26])
        return abs(h), abs(w)  # a negative height: rows stored top-down
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        w, h = struct.unpack("<HH", head[6:10])
        return h, w
    if head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X" and len(head) >= 30:
        w = int.from_bytes(head[24:27], "little") + 1
        h = int.from_bytes(head[27:30], "little") + 1
        return h, w
    if head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8 " and head[23:26] == b"\x9d\x01\x2a" and len(head) >= 30:
        w, h = struct.unpack("<HH", head[26:30])  # lossy: 14-bit sides, 2 bits of scale above them
        return h & 0x3FFF, w & 0x3FFF
    if head[:4] == b"RIFF" and len(head) >= 25 and head[8:16] == b"WEBPVP8L" and head[20] == 0x2F:
        (bits,) = struct.unpack("<I", head[21:25])  # lossless: 14 bits each, stored minus one
        return ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1
    if head[:4] in (b"II*\0", b"MM\0*"):
        return _tiff_size(np.ravel(data).data)
    return None


def _tiff_size(raw: memoryview) -> tuple[int, int] | None:
    """(height, width) from a TIFF's first image directory (ImageLength, ImageWidth); None if not found there."""
    order = "<" if raw[0] == 0x49 else ">"
    n = len(raw)
    if n < 8:
        return None
    (ifd,) = struct.unpack(order + "I", raw[4:8])
    if ifd + 2 > n:
        return None
    (count,) = struct.unpack(order + "H", raw[ifd : ifd + 2])
    sides: dict[int, int] = {}
    for k in range(min(count, (n - ifd - 2) // 12)):
        tag, kind, _, value = struct.unpack(order + "HHI4s", raw[ifd + 2 + 12 * k : ifd + 14 + 12 * k])
        if tag in (256, 257) and kind in (3, 4):  # a SHORT or a LONG, left-justified in the value field
            sides[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[: 2 if kind == 3 else 4])[0]
    return (sides[257], sides[256]) if 256 in sides and 257 in sides else None


def check_size(path: str, data: np.ndarray, bytes_per_pixel: int = 3) -> None:
    """Refuse, before decoding, an image whose header claims more than OpenCV will decode, or a decoder's peak past
    ``bounds.MAX_DECODED_BYTES``: a decompression bomb (or a huge scan) then costs a few header bytes, not the
    memory a decoder would reserve before refusing. ``bytes_per_pixel``: what the decoder holds at its peak per
    pixel (OpenCV decodes straight into the 3-byte RGB array; see ``decoders.PEAK_BYTES_PER_PIXEL``)."""
    size = header_size(data)
    if size is None:
        return
    h, w = size
    (wname, wmax), (hname, hmax), (pname, pmax) = ((n, _limit(n, d)) for n, d in _LIMITS)
    for claim, limit, name, what in ((w, wmax, wname, "wide"), (h, hmax, hname, "high"), (w * h, pmax, pname, "pixels")):
        if claim > limit:
            raise ImageReadError(
                path,
                f"header claims {w}×{h} pixels; OpenCV refuses more than {_power(limit)} {what}: set {name} or skip it",
            )
    bound = max_decoded_bytes()
    if h * w * bytes_per_pixel > bound:
        raise ImageReadError(
            path,
            f"header claims {w}×{h} pixels, {h * w * bytes_per_pixel / 2**20:,.0f} MB decoded; pdl refuses more than "
            f"{bound / 2**20:,.0f} MB an image: set {MAX_DECODED_ENV} or skip it",
        )


def reduced_scale(size: tuple[int, int], need: tuple[int, int]) -> int:
    """The largest JPEG decode factor f in (8, 4, 2, 1) that keeps ceil(h/f) >= need_h and ceil(w/f) >= need_w.

    OpenCV's (libjpeg's) reduced decode rounds each side up: 2049 px at 1/8 decodes to 257 px.
    """
    (h, w), (need_h, need_w) = size, need
    for f in (8, 4, 2):
        if -(-h // f) >= need_h and -(-w // f) >= need_w:
            return f
    return 1


# The reduce bits (16, 32, 64) combine with either colour flag: IMREAD_REDUCED_COLOR_2 is 16 | IMREAD_COLOR, and
# 16 | IMREAD_COLOR_RGB decodes RGB at half size in one pass (OpenCV 5 refuses IMREAD_COLOR_RGB | IMREAD_COLOR)
_REDUCE = {1: 0, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4, 8: cv2.IMREAD_REDUCED_GRAYSCALE_8}


_COLOR = cv2.IMREAD_COLOR if _COLOR_RGB is None else _COLOR_RGB  # OpenCV < 4.11: BGR, swapped after decoding


def decode_scale(data: np.ndarray, need: tuple[int, int] | None) -> int:
    """The factor (1, 2, 4 or 8) ``decode`` divides the sides of these bytes by, given ``need``: 1 unless a JPEG."""
    size = jpeg_size(data) if need is not None else None
    if need is None or size is None:
        return 1
    # EXIF orientation may turn the stored size round on decode: the factor must suit both ways
    return min(reduced_scale(size, need), reduced_scale((size[1], size[0]), need))


_PNG = b"\x89PNG\r\n\x1a\n"


def check_structure(path: str, data: np.ndarray) -> None:
    """Refuse a PNG chunk or a JPEG header segment that claims more bytes than the file holds: a decoder may
    reserve what the length field says before finding out (a 362 KB PNG whose IDAT claims 2.5 GB)."""
    raw = np.ravel(data).data
    n = len(raw)
    if is_jpeg(data):
        for marker, i in jpeg_markers(raw):
            length = raw[i + 2] << 8 | raw[i + 3]
            if length < 2 or i + 2 + length > n:
                raise ImageReadError(path, _too_long(f"JPEG segment FF{marker:02X}", i, length, n))
            if marker == 0xDA:
                return
    elif bytes(raw[:8]) == _PNG:
        i = 8
        while i + 8 <= n:
            length, kind = struct.unpack(">I4s", raw[i : i + 8])
            if i + 12 + length > n:
                name = kind.decode("latin-1") if kind.isalpha() else kind.hex()
                raise ImageReadError(path, _too_long(f"PNG chunk {name!r}", i, length, n))
            if kind == b"IEND":
                return
            i += 12 + length


def _too_long(what: str, offset: int, length: int, size: int) -> str:
    return (
        f"cannot decode ({what} at byte {offset:,} claims {length:,} bytes; the file has {size:,}): "
        "a damaged or hostile file; re-save it or skip it"
    )


def check_decodable(path: str, data: np.ndarray, bytes_per_pixel: int = 3) -> None:
    """What every decoder is spared: a truncated JPEG (OpenCV would fill it grey), a chunk or segment longer than
    the file (``check_structure``) and a header claiming more than OpenCV's limits or ``bounds.MAX_DECODED_BYTES``
    (``check_size``), each an ImageReadError naming the file."""
    if is_jpeg(data) and _jpeg_truncated(data):
        raise ImageReadError(path, "cannot decode (truncated JPEG: no end-of-image marker)")
    check_structure(path, data)
    check_size(path, data, bytes_per_pixel)


def decode(path: str, data: np.ndarray, need: tuple[int, int] | None = None) -> np.ndarray:
    """3-channel uint8 RGB, at full size unless ``need`` (height, width) is given and ``data`` is a JPEG.

    Then the JPEG is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's scaled IDCT: a fraction of the work), the
    smallest that is still at least ``need`` on both sides, whichever way EXIF orientation turns it.
    """
    jpeg = is_jpeg(data)
    check_decodable(path, data)
    try:
        image = cv2.imdecode(data, _REDUCE[decode_scale(data, need) if jpeg else 1] | _COLOR)
        if image is not None and _COLOR_RGB is None:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    except cv2.error as exc:  # any refusal of OpenCV's (a size over its limits, a damaged file): this file's
        raise ImageReadError(path, f"cannot decode (OpenCV: {_opencv_reason(exc)})") from None
    if image is None:
        raise ImageReadError(path, "cannot decode (not an image, or a format OpenCV cannot read)")
    return image


def _opencv_reason(exc: BaseException) -> str:
    """The useful part of a cv2.error: ``OpenCV(5.0.0) …/loadsave.cpp:79: error: (-215:Assertion failed) pixels
    <= CV_IO_MAX_IMAGE_PIXELS in function …`` → ``pixels <= CV_IO_MAX_IMAGE_PIXELS failed``."""
    text = " ".join(str(exc).split())
    _, sep, rest = text.partition("error: (")
    code, sep2, what = rest.partition(") ")
    if sep and sep2:
        what = what.partition(" in function")[0]
        return f"{what} failed" if "Assertion" in code else what
    return cut(text, REASON_CHARS) if text else type(exc).__name__


def read_image(path: str, need: tuple[int, int] | None = None) -> np.ndarray:
    """3-channel uint8 RGB whatever the file holds (grayscale, alpha and 16-bit are converted by OpenCV).

    ``need``: see :func:`decode`.
    """
    return decode(path, read_bytes(path), need)
