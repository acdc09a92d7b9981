"""Work below the batch: chunks land out of order on any worker, yet the batches are the sequential loop's,
bit for bit; slots come back after every way an epoch can end; a failing image in a chunk is named."""

from __future__ import annotations

import multiprocessing
import random
import time
from pathlib import Path

import numpy as np
import pytest

from pdl import ImageFolder, ParallelLoader, SequentialLoader, ThreadLoader, load_pipeline
from pdl.data.pipeline import Pipeline
from pdl.errors import WorkerError
from pdl.loaders.batching import StageTimes
from pdl.loaders.chunks import Part, WorkRate, chunk_offsets, chunk_size, split, stack

from ..conftest import write_image
from ..processes import shm_entries
from .test_loaders import assert_same, collect

pytestmark = pytest.mark.timeout(120)


class Jittery(Pipeline):
    """The light pipeline, after a random sleep of 0–6 ms per image: chunks finish in a scrambled order."""

    def __call__(self, image: np.ndarray, seed: int) -> np.ndarray:
        time.sleep(random.random() * 0.006)
        return super().__call__(image, seed)


@pytest.fixture(scope="module")
def jittery() -> Pipeline:
    light = load_pipeline("light")
    return Jittery(light.name, light.description, light.source, light.spec, light.output_shape, light.output_dtype)


def test_chunk_sizes_cover_the_batch_once() -> None:
    assert chunk_offsets(10, 4) == [(0, 4), (4, 4), (8, 2)]
    assert chunk_size(64, 2) == 8 and chunk_size(10, 2) == 3 and chunk_size(1, 4) == 1 and chunk_size(64, 2, 5) == 5
    assert chunk_size(1000, 2) == 8  # a batch as large as the epoch is still cut small: every core to the end
    assert split(10, 2, 4) == chunk_offsets(10, 4) and split(64, 2) == chunk_offsets(64, 8)
    # an epoch's first and last batches: auto chunks cut finer; a size the user asked for is kept
    assert split(64, 2, edge=True) == chunk_offsets(64, 2) and split(5, 2, edge=True) == chunk_offsets(5, 1)
    assert split(64, 2, 5, edge=True) == chunk_offsets(64, 5)
    assert split(300, 2, edge=True) == chunk_offsets(300, 8)  # 16 chunks a worker already: no more messages


def test_cheap_images_go_in_chunks_worth_their_messages() -> None:
    """0.1 ms an image: a chunk of 8 is under 1 ms of work, mostly its two messages; 5 ms of work needs 50 images,
    never more than one chunk per worker per batch. Images of 2 ms keep the sizes above; a size asked for wins."""
    assert split(64, 2, per_image_s=0.0001) == chunk_offsets(64, 32)
    assert split(64, 2, edge=True, per_image_s=0.0001) == chunk_offsets(64, 32)
    assert split(256, 2, per_image_s=0.0001) == chunk_offsets(256, 50)
    assert split(64, 2, per_image_s=0.002) == chunk_offsets(64, 8) == split(64, 2)
    assert split(64, 2, edge=True, per_image_s=0.002) == chunk_offsets(64, 3)  # 5 ms: 3 images, not 2
    assert split(64, 2, 4, per_image_s=0.0001) == chunk_offsets(64, 4)
    rate = WorkRate()
    assert rate.per_image_s is None  # nothing measured yet: the sizes above
    rate.add(Part(0, np.arange(3), [("x.jpg", "cannot decode")], StageTimes(0.001, 0.002, 0.0005, 0.0005)))
    assert rate.per_image_s == pytest.approx(0.001)  # 4 ms over 4 images, the skipped one included


class Cheap(WorkRate):
    """A rate fixed at 0.1 ms an image, whatever the chunks measure: what the loader does with a cheap rate is
    tested without timing anything."""

    per_image_s = 0.0001  # type: ignore[assignment]

    def add(self, part: Part) -> None:
        pass


def test_a_loader_learns_the_work_per_image_and_sends_fewer_chunks(tmp_path: Path) -> None:
    """Every image of an epoch teaches the rate; with a cheap rate each batch goes as one chunk per worker; the
    batches are the sequential loop's all the same."""
    for i in range(48):
        write_image(tmp_path / f"c{i % 2}" / f"{i}.png", np.full((24, 24, 3), i, np.uint8))
    ds = ImageFolder(tmp_path)
    (tmp_path / "tiny.yaml").write_text("name: tiny\ntransforms:\n  - Resize: {height: 16, width: 16}\n")
    tiny = load_pipeline(str(tmp_path / "tiny.yaml"))
    for cls in (ParallelLoader, ThreadLoader):
        seq = SequentialLoader(ds, tiny, batch_size=16, shuffle=True, seed=2)
        refs = [collect(seq), collect(seq)]
        # prefetch_epochs off: the chunks counted are this epoch's own, none made ahead for the next
        with cls(ds, tiny, batch_size=16, num_workers=2, shuffle=True, seed=2, prefetch_epochs=False) as loader:
            assert_same(refs[0], collect(loader))
            assert loader._rate.images == 48 and loader._rate.seconds > 0  # learned from every image made
            loader._rate = Cheap()
            assert_same(refs[1], collect(loader))
            if cls is ParallelLoader:
                assert sum(loader.stats.worker_tasks.values()) == 3 * 2  # 3 batches, 2 chunks each


def test_stacking_chunks_skips_one_whose_images_were_all_skipped() -> None:
    light = load_pipeline("light")
    made = np.ones((2, 7, 5, 3), np.uint8)
    empty = np.empty((0, 0, 0, 3), np.uint8)  # what a chunk of only unreadable images makes without a known size
    assert np.array_equal(stack([empty, made, empty], light), made)
    assert stack([empty], light).shape == (0, 200, 200, 3)


@pytest.mark.parametrize("workers", [1, 2, 3, 4])
@pytest.mark.parametrize(("batch_size", "chunk"), [(1, 0), (5, 0), (5, 2), (7, 3), (64, 0), (64, 4)])
def test_process_batches_equal_the_sequential_loop_whatever_the_split(images, jittery, workers, batch_size, chunk) -> None:
    ds = ImageFolder(images)  # 21 images: 64 is larger than the dataset
    args = dict(batch_size=batch_size, shuffle=True, seed=3)
    seq = SequentialLoader(ds, jittery, **args)
    ref = [collect(seq) for _ in range(2)]  # epochs 0 and 1: reshuffled
    with ParallelLoader(ds, jittery, num_workers=workers, chunk_size=chunk, **args) as par:
        for epoch in range(2):
            assert_same(ref[epoch], collect(par))
        assert par.stats.copied_batches == 0


@pytest.mark.parametrize("augment_in", ["workers", "main"])
@pytest.mark.parametrize(("workers", "chunk"), [(2, 1), (3, 0)])
def test_thread_and_the_main_split_give_the_same_batches(images, jittery, augment_in, workers, chunk) -> None:
    ds = ImageFolder(images)
    args = dict(batch_size=6, shuffle=True, seed=5, augment_in=augment_in)
    ref = collect(SequentialLoader(ds, jittery, **args))
    with ThreadLoader(ds, jittery, num_workers=workers, chunk_size=chunk, **args) as th:
        assert_same(ref, collect(th))
    with ParallelLoader(ds, jittery, num_workers=workers, chunk_size=chunk, **args) as par:
        assert_same(ref, collect(par))


def test_slots_all_return_after_a_full_epoch_a_break_an_error_and_close(tmp_path: Path, images, jittery) -> None:
    ds = ImageFolder(images)
    # prefetch_epochs off: every slot free between epochs (none held by the next epoch's first batches)
    with ParallelLoader(ds, jittery, batch_size=4, num_workers=2, chunk_size=1, prefetch_epochs=False) as par:
        collect(par)
        ring = par.ring
        assert ring is not None and ring.free == ring.slots
        for i, batch in enumerate(par):
            if i == 2:
                break
        del batch
        assert len(collect(par)) == 6  # the abandoned chunks drained, then a whole epoch
        assert par.ring is not None and par.ring.free == ring.slots
    assert not [entry for entry in shm_entries() if ring.name in entry]  # closed: the ring is gone (errors: see below)


def test_a_failing_image_inside_a_chunk_is_named_and_under_skip_only_it_is_dropped(tmp_path: Path, jittery) -> None:
    for i in range(9):
        write_image(tmp_path / "c" / f"{i}.jpg", np.full((300, 300, 3), i * 20, np.uint8))
    bad = tmp_path / "c" / "4.jpg"
    bad.write_bytes(b"not a jpeg")
    ds = ImageFolder(tmp_path)
    with ParallelLoader(ds, jittery, batch_size=9, num_workers=2, chunk_size=3) as par:
        with pytest.raises(WorkerError, match=r"4\.jpg: cannot decode"):
            collect(par)
    ref = collect(SequentialLoader(ds, jittery, batch_size=9, on_error="skip"))
    for cls in (ParallelLoader, ThreadLoader):
        with cls(ds, jittery, batch_size=9, num_workers=2, chunk_size=3, on_error="skip") as loader:
            got = collect(loader)
            assert loader.stats.skipped == [(str(bad), "cannot decode (not an image, or a format OpenCV cannot read)")]
        assert_same(ref, got)
        assert got[0][2].tolist() == [0, 1, 2, 3, 5, 6, 7, 8]  # the rows after the hole moved up, in order


def test_every_worker_works_and_the_tail_is_measured(images) -> None:
    ds, light = ImageFolder(images), load_pipeline("light")
    with ParallelLoader(ds, light, batch_size=21, num_workers=2, chunk_size=2) as par:  # one batch: the whole epoch
        collect(par)
        busy = par.stats.worker_busy_s
        assert sorted(busy) == [0, 1] and all(s > 0 for s in busy.values())
        assert 0 <= par.stats.tail_idle_s() < sum(busy.values())


class SlowFirstWorker(Pipeline):
    """The light pipeline, 40 ms slower per image in the first worker process only."""

    def __call__(self, image: np.ndarray, seed: int) -> np.ndarray:
        if multiprocessing.current_process().name == "pdl-worker-0":
            time.sleep(0.04)
        return super().__call__(image, seed)


def test_a_free_worker_takes_the_next_chunk_so_a_slow_one_makes_few(images) -> None:
    light = load_pipeline("light")
    slow = SlowFirstWorker(light.name, light.description, light.source, light.spec, light.output_shape, light.output_dtype)
    ds = ImageFolder(images)
    ref = collect(SequentialLoader(ds, light, batch_size=8, shuffle=True, seed=1))
    # prefetch_epochs off: the tasks counted are this epoch's own, none made ahead for the next
    with ParallelLoader(ds, slow, batch_size=8, num_workers=2, chunk_size=1, shuffle=True, seed=1, prefetch_epochs=False) as par:
        got = collect(par)  # 21 one-image chunks, every one of them queued at once (the window holds the epoch)
        tasks = par.stats.worker_tasks
    assert_same(ref, got)
    assert sum(tasks.values()) == 21
    # dealt out at dispatch time, worker 0 would have been given about half; taking them when free, it makes a
    # few while worker 1 makes the rest (a 40 ms image against ~2 ms ones)
    assert tasks[0] <= 5 < 16 <= tasks[1]


def test_reduced_decode_gives_the_same_batches_in_every_loader_and_never_decodes_below_the_resize(tmp_path: Path) -> None:
    import cv2

    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(1100, 900), (700, 1300), (520, 530), (300, 400)]):
        smooth = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 5)
        write_image(tmp_path / "c" / f"{i}.jpg", smooth)
    light = load_pipeline("light")  # Resize 256×256 first
    full, reduced = ImageFolder(tmp_path), ImageFolder(tmp_path, reduce_decode=True)
    for i in range(len(full)):
        image, _, _ = reduced.read(i, light.min_input_size)
        assert min(image.shape[:2]) >= 256 and image.shape[0] <= full[i].shape[0]
    assert reduced.read(0, light.min_input_size)[0].shape[:2] == (550, 450)  # 1/2 scale: 1/4 would be below 256
    ref = collect(SequentialLoader(reduced, light, batch_size=3))
    with ParallelLoader(reduced, light, batch_size=3, num_workers=2) as par:
        assert_same(ref, collect(par))
    with ThreadLoader(reduced, light, batch_size=3, num_workers=2) as th:
        assert_same(ref, collect(th))
    assert not np.array_equal(ref[0][0], collect(SequentialLoader(full, light, batch_size=3))[0][0])  # it is in use
