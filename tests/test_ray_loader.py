"""RayLoader: the batches of SequentialLoader, errors that name the file, no Ray process left after close.

Ray starts once for the module (seconds on 2 cores); RayLoader finds it running and leaves it alone. The last
test stops it and checks that a loader which starts its own instance leaves no process behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

ray = pytest.importorskip("ray")

from pdl import ImageFolder, SequentialLoader, load_pipeline  # noqa: E402
from pdl.errors import MissingDependencyError, PdlError  # noqa: E402
from pdl.inputs import generate  # noqa: E402
from pdl.loaders import Loader, make_loader  # noqa: E402
from pdl.loaders.base import LoaderSpec  # noqa: E402
from pdl.loaders.ray_ref import RayLoader  # noqa: E402

from .conftest import live_children, shm_entries  # noqa: E402

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),  # Ray's own, on every Dataset
]
module_ray: list[psutil.Process] = []  # the processes of the module's Ray instance (GCS, raylet, …)


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    before = {p.pid for p in psutil.Process().children()}
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
        object_store_memory=200 * 2**20,
    )  # fmt: skip
    module_ray[:] = [p for p in psutil.Process().children() if p.pid not in before]
    yield
    ray.shutdown()


def strays() -> list[psutil.Process]:
    """Live children of the test process, less the module's Ray instance and its workers."""
    ours = set()
    for proc in module_ray:
        with contextlib.suppress(psutil.Error):
            ours |= {proc.pid, *(child.pid for child in proc.children(recursive=True))}
    return [p for p in live_children() if p.pid not in ours]


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """conftest's check, but the module's Ray instance outlives each test (the last test checks Ray's own),
    and only this process's segments count (another run on the machine may hold its own)."""
    before = shm_entries()
    yield
    deadline = time.monotonic() + 3
    while strays() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert strays() == [], "a test left child processes alive"
    ours = {name for name in shm_entries() - before if name.startswith(f"pdl-{os.getpid()}-")}
    assert ours == set(), "a test left shared memory in /dev/shm"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    generate(root, classes=2, per_class=8, seed=0)  # 16 images: batches of 5 leave one
    return root


def assert_same_epoch(loader: Loader, baseline: Loader) -> None:
    batches, expected = list(loader), list(baseline)
    assert len(batches) == len(expected)
    for got, want in zip(batches, expected, strict=True):
        assert got.images.dtype == want.images.dtype
        np.testing.assert_array_equal(got.images, want.images)  # bit-identical
        np.testing.assert_array_equal(got.indices, want.indices)  # same images, same order
        np.testing.assert_array_equal(got.labels, want.labels)
        assert got.skipped == want.skipped


@pytest.mark.parametrize("augment_in", ["workers", "main"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_same_batches_as_sequential(ray_session: None, folder: Path, shuffle: bool, augment_in: str) -> None:
    dataset, pipeline = ImageFolder(folder), load_pipeline("medium")
    baseline = SequentialLoader(dataset, pipeline, batch_size=5, shuffle=shuffle, seed=3)
    kw = dict(batch_size=5, shuffle=shuffle, seed=3, num_workers=2, augment_in=augment_in)
    with RayLoader(dataset, pipeline, **kw) as loader:  # type: ignore[arg-type]
        for _epoch in range(2):
            assert_same_epoch(loader, baseline)
            assert len(loader.stats.wait_s) == len(loader.stats.stages) == len(loader) == 4
    assert ray.is_initialized()  # found running: not the loader's to stop


def test_abandoned_epoch_then_next(ray_session: None, folder: Path) -> None:
    dataset, pipeline = ImageFolder(folder), load_pipeline("light")
    spec = LoaderSpec(batch_size=4, shuffle=True, num_workers=2, timeout=60.0)
    with make_loader("ray", dataset, pipeline, spec, ray_address=None) as loader:
        next(iter(loader))  # epoch 0 left after one batch
        baseline = SequentialLoader(dataset, pipeline, batch_size=4, shuffle=True)
        baseline.epoch = 1
        assert_same_epoch(loader, baseline)


def test_corrupt_file_names_it(ray_session: None, folder: Path, tmp_path: Path) -> None:
    root = tmp_path / "images"
    shutil.copytree(folder, root)
    bad = root / "class_001" / "broken.jpg"
    bad.write_bytes(b"not an image")
    loader = RayLoader(ImageFolder(root), load_pipeline("light"), batch_size=4)
    with loader, pytest.raises(PdlError) as info:
        list(loader)
    assert str(bad) in str(info.value)
    assert "\n" not in str(info.value)  # one line, not Ray's traceback


def test_skip_matches_sequential(ray_session: None, folder: Path, tmp_path: Path) -> None:
    root = tmp_path / "images"
    shutil.copytree(folder, root)
    (root / "class_000" / "broken.jpg").write_bytes(b"not an image")
    dataset, pipeline = ImageFolder(root), load_pipeline("light")
    kw = dict(batch_size=1, on_error="skip")  # the broken image's batch is empty
    baseline = SequentialLoader(dataset, pipeline, **kw)  # type: ignore[arg-type]
    with RayLoader(dataset, pipeline, **kw) as loader:  # type: ignore[arg-type]
        assert_same_epoch(loader, baseline)
        assert loader.stats.skipped == baseline.stats.skipped and len(loader.stats.skipped) == 1


def test_without_ray_says_how_to_install(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'pdl\[ray\]'"):
        RayLoader(ImageFolder(folder), load_pipeline("light"))


def test_close_leaves_no_ray_process(folder: Path) -> None:
    """Runs last: stops the module's instance, so the loader starts its own and must stop it."""
    ray.shutdown()
    loader = RayLoader(ImageFolder(folder), load_pipeline("light"), batch_size=8, augment_in="main")
    loader.start()
    info = loader.cluster_info()
    assert info["nodes"] == 1 and info["cpus"] == 2 and loader.startup_s > 0
    assert len(list(loader)) == 2
    started = [psutil.Process(pid) for pid in loader.worker_pids]
    names = {p.name() for p in started}
    assert {"raylet", "gcs_server"} <= names and any(n.startswith("ray::") for n in names)
    loader.close()
    loader.close()  # safe twice
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, f"left behind: {[(p.pid, p.name()) for p in alive]}"
    assert live_children() == [] and not ray.is_initialized()
