"""The calibration workload: a small fixed piece of image-like work, the same in every pdl, timed in every round.

A shared machine drifts (±30% over minutes here): a loader measured today and the same loader measured tomorrow
differ by more than most regressions. The calibration is independent of the user's pipeline and data, and of
the libraries whose upgrades the gate must catch (OpenCV, albumentations): it is numpy only — a box blur, a
2× downscale, a flip and a float conversion of one fixed 384×384 RGB image made from a fixed seed, in the calling
thread. Timed beside the loaders in the same rounds it tracks the machine's speed, and a loader's throughput
times the calibration's seconds (images per calibration unit) cancels that drift. The gate compares those.

It is never changed silently: a different workload makes stored calibrations incomparable, so its description
is stored with the results (``CALIBRATION``) and the gate corrects for drift only between equal ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache

import numpy as np

CALIBRATION = "v2: numpy box blur 5, 2x downscale, flip, float32 of a 384x384x3 uint8 image; x36, timed whole"
_REPEATS = 36


@lru_cache(maxsize=1)
def _image() -> np.ndarray:
    rng = np.random.default_rng(20261201)
    y, x = np.mgrid[0:384, 0:384].astype(np.float32)
    image = np.stack([(x + y) / 3, x / 1.5, 255 - y / 1.5], axis=-1) + rng.normal(0, 12, (384, 384, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def _work(image: np.ndarray) -> float:
    total = 0.0
    for _ in range(_REPEATS):
        padded = np.pad(image.astype(np.uint16), ((2, 2), (2, 2), (0, 0)), mode="edge")
        rows = padded[:-4] + padded[1:-3] + padded[2:-2] + padded[3:-1] + padded[4:]
        blurred = (rows[:, :-4] + rows[:, 1:-3] + rows[:, 2:-2] + rows[:, 3:-1] + rows[:, 4:]) // 25
        small = (blurred[0::2, 0::2] + blurred[1::2, 0::2] + blurred[0::2, 1::2] + blurred[1::2, 1::2]) // 4
        flipped = small[:, ::-1].astype(np.float32) / 255.0
        total += float(flipped[0, 0, 0])
    return total


def calibration_s(clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds the calibration workload takes on this machine now, timed whole: what the machine gives the
    loaders at that moment, a neighbour's share of the cores included (a best-of-n would filter that out)."""
    image = _image()
    t0 = clock()
    _work(image)
    return clock() - t0
