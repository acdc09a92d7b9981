"""TorchLoader: the same batches as pdl's own loaders, pdl's errors, no process left behind."""

from __future__ import annotations

import itertools
import os
import re
import signal
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

pytest.importorskip("torch")

from pdl.data import synth as inputs
from pdl.data.folder import ImageFolder
from pdl.data.pipeline import Pipeline, load_pipeline
from pdl.errors import LoaderTimeoutError, MissingDependencyError, WorkerDiedError, WorkerError
from pdl.loaders import SequentialLoader
from pdl.loaders.peers import torch as torch_ref
from pdl.loaders.peers.torch import TorchLoader


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    inputs.generate(root, classes=2, per_class=10, seed=0)
    return root


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return load_pipeline("heavy")  # random transforms: any mix-up of seeds shows


def epochs(loader: SequentialLoader | TorchLoader, n: int = 2) -> list[list[tuple[np.ndarray, ...]]]:
    with loader:
        return [[(b.images.copy(), b.labels, b.indices) for b in loader] for _ in range(n)]


def new_children(before: set[int]) -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()]


CASES = list(itertools.product([1, 2], [False, True], [False, True], [3, 7], ["workers", "main"]))


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("workers", "shuffle", "drop_last", "batch_size", "augment_in"), CASES)
def test_same_batches_as_sequential(
    folder: Path,
    pipeline: Pipeline,
    workers: int,
    shuffle: bool,
    drop_last: bool,
    batch_size: int,
    augment_in: Any,
) -> None:
    dataset = ImageFolder(folder)
    common: dict[str, Any] = dict(batch_size=batch_size, shuffle=shuffle, seed=3, drop_last=drop_last)
    want = epochs(SequentialLoader(dataset, pipeline, **common))
    got = epochs(TorchLoader(dataset, pipeline, **common, num_workers=workers, augment_in=augment_in))
    assert len(got[0]) == len(want[0]) == (20 // batch_size if drop_last else -(-20 // batch_size))
    if shuffle:
        assert not np.array_equal(got[0][0][2], got[1][0][2])  # reshuffled per epoch
    for got_epoch, want_epoch in zip(got, want, strict=True):
        for g, w in zip(got_epoch, want_epoch, strict=True):
            for g_arr, w_arr in zip(g, w, strict=True):
                assert g_arr.dtype == w_arr.dtype and np.array_equal(g_arr, w_arr)


@pytest.mark.timeout(60)
def test_stats_and_worker_pids(folder: Path, pipeline: Pipeline) -> None:
    with TorchLoader(ImageFolder(folder), pipeline, batch_size=4, num_workers=2) as loader:
        loader.start()
        assert len(loader.worker_pids) == 2
        assert all(psutil.pid_exists(pid) for pid in loader.worker_pids)
        batches = list(loader)
        assert len(loader.stats.stages) == len(loader.stats.wait_s) == len(batches) == 5
        assert all(t.decode > 0 and t.augment > 0 for t in loader.stats.stages)
        # each worker's busy time is what it spent making its batches: both made some, and a batch's own stage
        # times (read + decode + augment + collate) fit inside its worker's busy time
        busy = loader.stats.worker_busy_s
        assert sorted(busy) == [0, 1]
        made = sum(t.read + t.decode + t.augment + t.collate for t in loader.stats.stages)
        assert made <= sum(busy.values()) < made + 0.5
        assert 0 <= loader.stats.tail_idle_s() <= max(busy.values())


@pytest.mark.timeout(60)
@pytest.mark.parametrize("augment_in", ["workers", "main"])
def test_close_leaves_no_child(folder: Path, pipeline: Pipeline, augment_in: Any) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    loader = TorchLoader(ImageFolder(folder), pipeline, batch_size=4, num_workers=2, augment_in=augment_in)
    next(iter(loader))  # stopped mid-epoch, batches still in flight
    pids = loader.worker_pids
    assert len(pids) == 2 and {p.pid for p in new_children(before)} >= set(pids)
    loader.close()
    loader.close()  # twice is fine
    assert new_children(before) == []
    assert loader.worker_pids == []


@pytest.mark.timeout(60)
def test_early_break_then_next_epoch(folder: Path, pipeline: Pipeline) -> None:
    dataset = ImageFolder(folder)
    want = epochs(SequentialLoader(dataset, pipeline, batch_size=3, shuffle=True), 2)[1]
    with TorchLoader(dataset, pipeline, batch_size=3, shuffle=True, num_workers=2) as loader:
        next(iter(loader))  # epoch 0 abandoned after one batch
        got = [(b.images, b.labels, b.indices) for b in loader]  # epoch 1, whole
    for g, w in zip(got, want, strict=True):
        assert all(np.array_equal(a, b) for a, b in zip(g, w, strict=True))


@pytest.fixture
def broken(tmp_path: Path) -> tuple[Path, str]:
    inputs.generate(tmp_path, classes=2, per_class=10, seed=0)
    bad = sorted(tmp_path.glob("class_001/*.jpg"))[4]
    bad.write_bytes(b"not an image")
    return tmp_path, str(bad)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("augment_in", ["workers", "main"])
def test_unreadable_image_names_file(broken: tuple[Path, str], pipeline: Pipeline, augment_in: Any) -> None:
    root, bad = broken
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    loader = TorchLoader(ImageFolder(root), pipeline, batch_size=4, num_workers=2, augment_in=augment_in)
    with pytest.raises(WorkerError, match=re.escape(Path(bad).name)) as info:
        list(loader)
    assert info.value.path == bad and info.value.exc_type == "ImageReadError"
    assert new_children(before) == []  # an error stops the workers


@pytest.mark.timeout(60)
def test_skip_matches_sequential(broken: tuple[Path, str], pipeline: Pipeline) -> None:
    root, bad = broken
    dataset = ImageFolder(root)
    common: dict[str, Any] = dict(batch_size=4, shuffle=True, on_error="skip")
    want = epochs(SequentialLoader(dataset, pipeline, **common), 1)[0]
    with TorchLoader(dataset, pipeline, **common) as loader:
        got = [(b.images, b.labels, b.indices) for b in loader]
        assert [path for path, _ in loader.stats.skipped] == [bad]
    assert sum(len(g[2]) for g in got) == 19
    for g, w in zip(got, want, strict=True):
        assert all(np.array_equal(a, b) for a, b in zip(g, w, strict=True))


@pytest.mark.timeout(60)
def test_failing_transform_is_a_worker_error(folder: Path, pipeline: Pipeline) -> None:
    class Explodes:
        def __call__(self, **data: object) -> None:
            raise ValueError("boom")

        def set_random_state(self, *args: object) -> None:
            pass

    bad = Pipeline("explodes", "", "test", spec={}, output_shape=pipeline.output_shape)
    object.__setattr__(bad, "compose", Explodes())  # cached_property: set before the workers fork
    dataset = ImageFolder(folder)
    with pytest.raises(WorkerError, match="ValueError: boom while augmenting") as info:
        list(TorchLoader(dataset, bad, batch_size=4, num_workers=1))
    assert info.value.path == dataset.path(0)


@pytest.mark.timeout(60)
def test_missing_torch_says_how_to_install(folder: Path, pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_ref, "torch", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'pdl\[torch\]'"):
        TorchLoader(ImageFolder(folder), pipeline)


class Sleeps:
    def __call__(self, **data: object) -> None:
        import time

        time.sleep(3)

    def set_random_state(self, *args: object) -> None:
        pass


@pytest.mark.timeout(60)
def test_timeout(folder: Path, pipeline: Pipeline) -> None:
    slow = Pipeline("slow", "", "test", spec={}, output_shape=pipeline.output_shape)
    object.__setattr__(slow, "compose", Sleeps())
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    loader = TorchLoader(ImageFolder(folder), slow, batch_size=2, num_workers=1, timeout=0.5)
    with pytest.raises(LoaderTimeoutError, match=r"timed out after 0\.5 seconds"):
        list(loader)
    assert new_children(before) == []


@pytest.mark.timeout(60)
def test_killed_worker(folder: Path, pipeline: Pipeline) -> None:
    loader = TorchLoader(ImageFolder(folder), pipeline, batch_size=2, num_workers=2)
    loader.start()
    with pytest.raises(WorkerDiedError, match="DataLoader worker"):
        os.kill(loader.worker_pids[0], signal.SIGKILL)
        list(loader)
    assert loader.worker_pids == []
