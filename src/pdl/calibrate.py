"""The calibration workload: a small fixed piece of image work, the same in every pdl, timed in every round.

A shared machine drifts (±30% over minutes here): a loader measured today and the same loader measured tomorrow
differ by more than most regressions. The calibration is independent of the user's pipeline and data — it
decodes one JPEG made from a fixed seed, blurs it, resizes it and flips it, with OpenCV in the calling thread
— so timed beside the loaders in the same rounds it tracks the machine's speed, and a loader's throughput
times the calibration's seconds (images per calibration unit) cancels that drift. The gate compares those.

It is never changed: a different workload would make every stored calibration incomparable. Its version is
stored with the results (``CALIBRATION``); the gate compares drift-corrected throughput only between equal
versions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import lru_cache

CALIBRATION = "v1: decode 256² JPEG q90, blur 5×5, resize to 128², flip; ×96, timed whole"
_REPEATS = 96


@lru_cache(maxsize=1)
def _jpeg() -> bytes:
    import cv2
    import numpy as np

    rng = np.random.default_rng(20261201)
    y, x = np.mgrid[0:256, 0:256].astype(np.float32)
    image = np.stack([(x + y) / 2, x, 255 - y], axis=-1) + rng.normal(0, 12, (256, 256, 3))  # gradients and grain
    ok, buf = cv2.imencode(".jpg", np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return bytes(buf)


def _work(data: bytes) -> int:
    import cv2
    import numpy as np

    raw = np.frombuffer(data, np.uint8)
    total = 0
    for _ in range(_REPEATS):
        decoded = cv2.imdecode(raw, cv2.IMREAD_COLOR)
        assert decoded is not None  # pdl's own JPEG
        image = cv2.GaussianBlur(decoded, (5, 5), 0)
        image = cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA)
        total += int(cv2.flip(image, 1)[0, 0, 0])
    return total


def calibration_s(clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds the calibration workload takes on this machine now, timed whole: what the machine gives the
    loaders at that moment, a neighbour's share of the cores included (a best-of-n would filter that out)."""
    data = _jpeg()
    t0 = clock()
    _work(data)
    return clock() - t0
