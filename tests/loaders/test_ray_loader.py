"""RayLoader: the batches of SequentialLoader (and its shards), actors that persist across epochs, errors that
name the file, the worker or the timeout, quiet output, no Ray process or file left after close.

Ray starts once for the module (seconds on 2 cores); RayLoader finds it running and leaves it alone. The last
tests stop it and check that a loader which starts its own instance leaves nothing behind (`pdl run` with Ray:
test_ray_run.py, in a module of its own so that it runs beside these under pytest-xdist).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

ray = pytest.importorskip("ray")

from pdl import ImageFolder, SequentialLoader, load_pipeline  # noqa: E402
from pdl.data.synth import generate  # noqa: E402
from pdl.errors import LoaderTimeoutError, MissingDependencyError, PdlError, WorkerDiedError  # noqa: E402
from pdl.loaders import Loader, make_loader  # noqa: E402
from pdl.loaders.base import LoaderSpec  # noqa: E402
from pdl.loaders.ray import RayLoader, ray_temp_dir  # noqa: E402

from ..conftest import write_image  # noqa: E402
from ..processes import check_nothing_left, live_children, shm_entries, stopping_what_it_starts, stray  # noqa: E402

pytestmark = [pytest.mark.timeout(180), pytest.mark.xdist_group("ray")]  # one worker runs them all: conftest.ONE_WORKER
module_ray: list[psutil.Process] = []  # the processes of the module's Ray instance (GCS, raylet, …)


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """One local Ray instance for the module, its files (and Ray's default temp dir, RAY_TMPDIR) in a folder of its
    own; whatever it started is stopped after, and if ray.init fails half-way."""
    temp = Path(ray_temp_dir("ray-"))  # short: Ray's socket paths under it must fit in 107 characters
    with pytest.MonkeyPatch.context() as env, stopping_what_it_starts():
        env.setenv("RAY_TMPDIR", str(temp))
        (temp / "ray").mkdir()  # Ray's default temp dir under RAY_TMPDIR: where it writes the address file
        before = {p.pid for p in psutil.Process().children()}
        try:
            ray.init(
                num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
                object_store_memory=200 * 2**20, _temp_dir=str(temp),
            )  # fmt: skip
            module_ray[:] = [p for p in psutil.Process().children() if p.pid not in before]
            yield
        finally:
            ray.shutdown()
            module_ray.clear()
            shutil.rmtree(temp, ignore_errors=True)


def module_pids() -> set[int]:
    """The module's Ray instance and its workers: they outlive each test (the last test checks Ray's own)."""
    ours = set()
    for proc in module_ray:
        with contextlib.suppress(psutil.Error):
            ours |= {proc.pid, *(child.pid for child in proc.children(recursive=True))}
    return ours


def strays() -> list[psutil.Process]:
    """Live children of the test process, less the module's Ray instance and its workers."""
    return stray(module_pids)


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """conftest's check, the module's Ray instance exempt."""
    before = shm_entries()
    yield
    check_nothing_left(before, module_pids)


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
        loader.start()
        actors = loader.actor_pids
        assert len(actors) == 2 and all(psutil.pid_exists(pid) for pid in actors)
        for _epoch in range(2):
            assert_same_epoch(loader, baseline)
            assert len(loader.stats.wait_s) == len(loader.stats.stages) == len(loader) == 4
            assert loader.actor_pids == actors  # the same workers every epoch: started once
        assert sum(loader.node_tasks.values()) == 2 * (3 + 3 + 3 + 1)  # 2 epochs of batches 5, 5, 5, 1 in chunks of 2
        assert sorted(loader.stats.worker_busy_s) == [0, 1]  # both workers made chunks
    assert ray.is_initialized()  # found running: not the loader's to stop
    _, alive = psutil.wait_procs([psutil.Process(pid) for pid in actors if psutil.pid_exists(pid)], timeout=30)
    assert not alive  # its actors are killed on close


@pytest.mark.parametrize(("workers", "taken"), [(1, 0), (2, 3), (1, 4)])
def test_a_state_resumes_on_ray_and_a_ray_state_elsewhere(ray_session: None, folder: Path, workers: int, taken: int) -> None:
    """16 images in batches of 5 (4 batches): before the first, within the epoch (before the last), the whole
    epoch. (After the first batch, too, is tested on every other loader in test_resume.py; on Ray it cost 10 s.)"""
    dataset, pipeline = ImageFolder(folder), load_pipeline("medium")
    spec = LoaderSpec(batch_size=5, shuffle=True, seed=3)
    reference = SequentialLoader(dataset, pipeline, spec)
    epochs = [[(b.indices, b.images) for b in reference] for _ in range(2)]
    with RayLoader(dataset, pipeline, spec, num_workers=workers) as ray_loader:
        it = iter(ray_loader)
        for _ in range(taken):
            next(it)
        it.close()  # type: ignore[attr-defined]
        state = json.loads(json.dumps(ray_loader.state_dict()))
        resumed = SequentialLoader(dataset, pipeline, spec)
        resumed.load_state_dict(state)
        rest = [(b.indices.copy(), np.array(b.images, copy=True)) for _ in range(2 if taken < 4 else 1) for b in resumed]
        ray_loader.load_state_dict(state)  # the same state on Ray itself
        again = [(b.indices.copy(), np.array(b.images, copy=True)) for _ in range(2 if taken < 4 else 1) for b in ray_loader]
    want = (epochs[0][taken:] + epochs[1]) if taken < 4 else epochs[1]  # the epoch's rest, then the next
    for got in (rest, again):
        assert [g[0].tolist() for g in got] == [w[0].tolist() for w in want]
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g[1], w[1])


@pytest.mark.parametrize("world", [3])  # uneven (16 images): every loader's sharding at 1-4 is in test_shards.py
def test_each_rank_is_the_sequential_loaders_shard(ray_session: None, folder: Path, world: int) -> None:
    dataset, pipeline = ImageFolder(folder), load_pipeline("light")
    seen = []
    for rank in range(world):
        spec = LoaderSpec(batch_size=3, shuffle=True, seed=1, num_workers=2, rank=rank, world_size=world)
        with make_loader("ray", dataset, pipeline, spec) as loader:
            assert_same_epoch(loader, SequentialLoader(dataset, pipeline, spec))
            seen.append(np.concatenate([b.indices for b in SequentialLoader(dataset, pipeline, spec)]))
    assert len({len(s) for s in seen}) == 1 and set(np.concatenate(seen).tolist()) == set(range(16))


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


def test_a_killed_worker_is_an_error_naming_the_loader(ray_session: None, folder: Path) -> None:
    loader = RayLoader(ImageFolder(folder), load_pipeline("light"), batch_size=1, num_workers=2, prefetch=1)
    with loader:
        batches = iter(loader)
        next(batches)
        os.kill(loader.actor_pids[0], 9)
        t0 = time.monotonic()
        with pytest.raises(
            WorkerDiedError, match=r"^the ray loader's worker 0 \(node \w{8}\) died while making batch \d+ of epoch 0: "
        ):
            list(batches)
        assert time.monotonic() - t0 < 30  # an error, not a hang
    assert ray.is_initialized()


def test_a_stuck_worker_times_out(ray_session: None, tmp_path: Path) -> None:
    write_image(tmp_path / "c" / "a.jpg", np.zeros((300, 300, 3), np.uint8))
    os.mkfifo(tmp_path / "c" / "b.jpg")  # reading blocks for ever, like a hung network mount
    with RayLoader(ImageFolder(tmp_path), load_pipeline("light"), batch_size=1, num_workers=1, timeout=1.0) as loader:
        with pytest.raises(
            LoaderTimeoutError, match=r"^the ray loader got no chunk within 1s while waiting for batch 1 of epoch 0"
        ):
            list(loader)
    # close() killed the stuck actor: the module's Ray still runs the next test


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
    temp = Path(loader._temp_dir or "")
    assert temp.name.startswith("pdl-ray-") and any(temp.glob("session_*"))  # its session files: not /tmp/ray
    loader.close()
    loader.close()  # safe twice
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, f"left behind: {[(p.pid, p.name()) for p in alive]}"
    assert live_children() == [] and not ray.is_initialized()
    assert not temp.exists()


def test_ray_gets_a_temp_dir_short_enough_for_its_sockets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray's socket paths must fit 107 bytes: a long $TMPDIR (a CI's nested temporary folders) falls back to /tmp."""
    long = tmp_path / ("x" * 60)
    long.mkdir()
    for base, expect in ((long, "/tmp"), (Path("/tmp"), "/tmp")):
        monkeypatch.setattr(tempfile, "tempdir", str(base))
        made = Path(ray_temp_dir("pdl-ray-"))
        try:
            assert str(made.parent) == expect and len(str(made)) <= 40 and made.is_dir()
        finally:
            made.rmdir()
