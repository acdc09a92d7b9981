"""A reproducible folder of real photographs, built offline from the photos that pip packages ship.

scikit-image ships real photos inside its wheel (``skimage.data``) and matplotlib ships ``grace_hopper.jpg``;
those that load without a network download become one class folder each. Every image is a random crop of its
source, resized to a random longer side and saved in a mix of formats and qualities, so the folder reads like a
scraped, ImageNet-like set rather than like one flattering size and codec.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from statistics import median

import cv2
import numpy as np

from ..errors import ConfigError, MissingDependencyError

DEFAULT_COUNT = 480
DEFAULT_MIN_SIDE = 100
DEFAULT_MAX_SIDE = 640
MAX_SIDE_LIMIT = 8192
FORMAT_SHARES = (("jpg", 0.70), ("png", 0.15), ("webp", 0.15))
FORMATS = tuple(f for f, _ in FORMAT_SHARES)
GRAYSCALE_SHARE = 0.10
# skimage.data loaders of colour photographs inside the wheel (others need a pooch download; camera, the one
# grayscale photo, is left out so that single-channel files are the 10% converted ones).
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "immunohistochemistry", "retina", "rocket")


@dataclass(frozen=True)
class PhotoSet:
    """What `build_photos` wrote: the facts the CLI's summary line is made of."""

    root: Path
    count: int
    sources: tuple[str, ...]
    """Class folders, one per source photo."""
    packages: tuple[tuple[str, str], ...]
    """(package, version) of every package whose photos were used."""
    formats: tuple[tuple[str, int], ...]
    """(extension, files) of each format asked for, in FORMAT_SHARES order."""
    grayscale: int
    """Single-channel files."""
    upscaled: int
    """Images whose crop was smaller than their size, as the source photo was."""
    longer_side: tuple[int, int, int]
    """Min, median and max of the images' longer side, in pixels."""
    total_bytes: int


def load_sources() -> tuple[dict[str, np.ndarray], tuple[tuple[str, str], ...]]:
    """The source photos as RGB uint8 arrays by class name, and the packages they came from."""
    try:
        from skimage import data
    except ImportError:
        raise MissingDependencyError("--photos needs scikit-image: pip install 'pdl[photos]'") from None
    try:
        from matplotlib import cbook
    except ImportError:
        raise MissingDependencyError("--photos needs matplotlib (it ships grace_hopper.jpg): pip install 'pdl[photos]'") from None
    from .codec import read_image

    photos = {name: np.ascontiguousarray(getattr(data, name)()) for name in SKIMAGE_PHOTOS}
    stereo: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]] = data.stereo_motorcycle
    photos["motorcycle"] = np.ascontiguousarray(stereo()[0])  # the left view of the stereo pair
    photos["grace_hopper"] = read_image(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    packages = (("scikit-image", version("scikit-image")), ("matplotlib", version("matplotlib")))
    return dict(sorted(photos.items())), packages


def parse_formats(text: str) -> tuple[str, ...]:
    """``--formats``: a comma list among jpg, png, webp; returned in FORMAT_SHARES order, each once."""
    asked = [f.strip().lower() for f in text.split(",") if f.strip()]
    unknown = [f for f in asked if f not in FORMATS]
    if unknown or not asked:
        what = f"'{unknown[0]}' is not one of" if unknown else "give at least one of"
        raise ConfigError(f"--formats '{text}': {what} {', '.join(FORMATS)} (a comma list), e.g. --formats jpg")
    return tuple(f for f in FORMATS if f in asked)


def check_options(count: int, min_side: int, max_side: int, seed: int) -> None:
    if count < 1:
        raise ConfigError(f"--count {count}: must be at least 1, e.g. --count {DEFAULT_COUNT}")
    if min_side < 16:
        raise ConfigError(f"--min-side {min_side}: must be at least 16 pixels, e.g. --min-side {DEFAULT_MIN_SIDE}")
    if max_side > MAX_SIDE_LIMIT:
        raise ConfigError(f"--max-side {max_side}: must be at most {MAX_SIDE_LIMIT} pixels")
    if min_side > max_side:
        raise ConfigError(
            f"--min-side {min_side} is above --max-side {max_side}: raise --max-side to at least {min_side}, or lower --min-side"
        )
    if seed < 0:
        raise ConfigError(f"--seed {seed}: must be 0 or more")


def build_photos(
    out: Path,
    count: int = DEFAULT_COUNT,
    min_side: int = DEFAULT_MIN_SIDE,
    max_side: int = DEFAULT_MAX_SIDE,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    formats: tuple[str, ...] = FORMATS,
    upscale: bool = True,
) -> PhotoSet:
    """Write ``count`` images under ``out/<source>/``, dealt round-robin over the source photos.

    Each image is a random crop (aspect ratio 2:3 to 3:2, 30–100% of the largest such crop) whose longer side is
    then resized to a uniform random length in [min_side, max_side]. The crop is never smaller than that length
    when the source allows it, so an image is only upscaled when its source photo (at the crop's aspect ratio) is
    smaller than asked: with the default sizes, some near the top of the range; with ``--min-side 800``, most of
    them (the sources' longer sides are 451 to 1411 px). Exactly 70/15/15% (rounded) are JPEG
    (quality 75–95), PNG and WebP (quality 75–95), and 10% are single-channel grayscale JPEGs or PNGs, all spread
    by the seed. ``formats`` keeps only some of the three (their shares renormalised): ``("jpg",)`` writes JPEGs
    only, as ImageNet is; WebP alone has no grayscale files (it has no single-channel mode). ``upscale=False``
    keeps only the sources whose longer side reaches ``min_side`` and never enlarges a crop: an image whose crop
    (at its aspect ratio) cannot reach its drawn size keeps the crop's own, so every pixel is a photographed one.

    The same seed gives the same bytes with the same package and OpenCV versions. Each file is written under a
    hidden temporary name and renamed, so an interrupted run leaves no half-written image. Refuses to write into
    class folders that already exist.
    """
    check_options(count, min_side, max_side, seed)
    formats = parse_formats(",".join(formats))
    sources, packages = load_sources()
    if not upscale:
        largest = max(max(src.shape[:2]) for src in sources.values())
        sources = {name: src for name, src in sources.items() if max(src.shape[:2]) >= min_side}
        if not sources:
            raise ConfigError(
                f"--no-upscale --min-side {min_side}: no shipped photo is that large (the largest is {largest} px); "
                f"lower --min-side to at most {largest}"
            )
    names = list(sources)[:count]
    taken = [out / name for name in names if (out / name).exists()]
    if taken:
        raise ConfigError(f"'{taken[0]}' already exists; choose an empty --out folder or remove it first")
    plan = np.random.default_rng([seed, 0])
    kinds = plan.permutation(np.repeat(list(formats), _shares(count, formats)))
    grayscale = np.zeros(count, dtype=bool)  # WebP has no single-channel mode: gray files are JPEG or PNG
    grayscale[plan.permutation(np.flatnonzero(kinds != "webp"))[: round(count * GRAYSCALE_SHARE)]] = True
    for name in names:
        (out / name).mkdir(parents=True)
    sides, nbytes, upscaled = [], 0, 0
    for i in range(count):
        name = names[i % len(names)]
        rng = np.random.default_rng([seed, 1, i])
        image, up = _crop_resized(rng, sources[name], int(rng.integers(min_side, max_side + 1)), upscale)
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY if grayscale[i] else cv2.COLOR_RGB2BGR)
        data = _encode(str(kinds[i]), image, int(rng.integers(75, 96)))
        _write_atomically(out / name / f"{name}_{i:05d}.{kinds[i]}", data)
        sides.append(max(image.shape[:2]))
        nbytes, upscaled = nbytes + len(data), upscaled + up
        if progress:
            progress(i + 1, count)
    return PhotoSet(
        root=out,
        count=count,
        sources=tuple(names),
        packages=packages,
        formats=tuple((f, int((kinds == f).sum())) for f in formats),
        grayscale=int(grayscale.sum()),
        upscaled=upscaled,
        longer_side=(min(sides), int(median(sides)), max(sides)),
        total_bytes=nbytes,
    )


def _shares(count: int, formats: tuple[str, ...] = FORMATS) -> list[int]:
    """Files per format in ``formats``: their shares (renormalised to sum to 1) rounded, the remainder to the first."""
    shares = [share for f, share in FORMAT_SHARES if f in formats]
    rest = [round(count * share / sum(shares)) for share in shares[1:]]
    return [count - sum(rest), *rest]


def _crop_resized(rng: np.random.Generator, src: np.ndarray, side: int, upscale: bool = True) -> tuple[np.ndarray, bool]:
    """A random crop of ``src`` resized so its longer side is ``side`` (with ``upscale`` off, at most the largest
    crop's), and whether that meant upscaling."""
    h, w = src.shape[:2]
    aspect = math.exp(rng.uniform(math.log(2 / 3), math.log(3 / 2)))  # width / height
    full_w = min(w, h * aspect)
    full_h = full_w / aspect
    longest = max(full_w, full_h)
    if not upscale:
        side = min(side, math.floor(longest))
    crop_long = max(longest * math.sqrt(rng.uniform(0.3, 1.0)), min(side, longest))
    cw, ch = max(1, round(full_w * crop_long / longest)), max(1, round(full_h * crop_long / longest))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    scale = side / max(cw, ch)
    size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(src[y : y + ch, x : x + cw], size, interpolation=interpolation), scale > 1


def _encode(fmt: str, image: np.ndarray, quality: int) -> bytes:
    params = {
        "jpg": [cv2.IMWRITE_JPEG_QUALITY, quality],
        "png": [cv2.IMWRITE_PNG_COMPRESSION, 6],
        "webp": [cv2.IMWRITE_WEBP_QUALITY, quality],
    }[fmt]
    ok, buf = cv2.imencode(f".{fmt}", image, params)
    assert ok, f"OpenCV could not encode {fmt}"
    return buf.tobytes()


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.part")  # hidden and without an image extension: `scan` skips it
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def summary(photos: PhotoSet) -> str:
    """One line: what was written, from which packages, in which sizes and formats."""
    packages = " and ".join(f"{name} {version}" for name, version in photos.packages)
    low, mid, high = photos.longer_side
    formats = " / ".join(f"{n} {fmt}" for fmt, n in photos.formats)
    return (
        f"wrote {photos.count} real photos from {packages} in {len(photos.sources)} class folders under {photos.root}/: "
        f"longer side {low}–{high} px (median {mid}), {formats}, {photos.grayscale} grayscale, {photos.upscaled} upscaled, {photos.total_bytes / 1e6:.1f} MB"
    )
