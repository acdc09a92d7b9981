"""Shared fixtures: small generated image sets, and a check after every test that nothing was left behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import pdl  # noqa: F401  (sets NO_ALBUMENTATIONS_UPDATE before anything imports albumentations)
from pdl.inputs import generate
from pdl.loaders.shm import SHM_PREFIX


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes × 7 photo-like JPEGs of ImageNet-like sizes (21 images: batches of 5 leave a remainder)."""
    root = tmp_path_factory.mktemp("images")
    generate(root, classes=3, per_class=7, seed=0)
    return root


def shm_entries() -> set[str]:
    """This test process's pdl segments (named pdl-<creator pid>-...), whatever other pdl runs do meanwhile."""
    mine = f"{SHM_PREFIX}{os.getpid()}-"
    try:
        return {name for name in os.listdir("/dev/shm") if name.startswith(mine)}
    except FileNotFoundError:
        return set()


def live_children() -> list[psutil.Process]:
    """Children of the test process, ignoring multiprocessing's own helpers and finished zombies."""
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(child.cmdline())
            if child.status() == psutil.STATUS_ZOMBIE or "resource_tracker" in cmd or "forkserver" in cmd:
                continue
        except psutil.Error:
            continue
        alive.append(child)
    return alive


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """Every test must leave no worker process and no /dev/shm segment of pdl behind."""
    before = shm_entries()
    yield
    deadline = time.monotonic() + 3
    while (live_children() or shm_entries() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_children() == [], "a test left child processes alive"
    assert shm_entries() - before == set(), "a test left shared memory in /dev/shm"


def write_image(path: Path, array: np.ndarray) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, array)
    assert ok
    buf.tofile(str(path))
    return path
