"""Loaders: contents and order, bit-identical batches across loaders, errors, faults and cleanup. Never speed."""

from __future__ import annotations

import gc
import os
import pickle
import signal
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from pdl import ImageFolder, ParallelLoader, SequentialLoader, ThreadLoader, load_pipeline
from pdl.errors import ConfigError, LoaderTimeoutError, SharedMemoryError, WorkerDiedError, WorkerError
from pdl.loaders import LoaderSpec, make_loader

from ..conftest import write_image
from ..processes import shm_entries

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def heavy():
    return load_pipeline("heavy")


def collect(loader):
    return [(b.images.copy(), b.labels.copy(), b.indices.copy()) for b in loader]


def assert_same(a, b) -> None:
    assert len(a) == len(b)
    for (ia, la, xa), (ib, lb, xb) in zip(a, b, strict=True):
        assert np.array_equal(xa, xb) and np.array_equal(la, lb)
        assert ia.dtype == ib.dtype and np.array_equal(ia, ib)


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
def test_every_index_once_per_epoch_in_plan_order(images: Path, heavy, shuffle: bool, drop_last: bool) -> None:
    ds = ImageFolder(images)
    loader = SequentialLoader(ds, heavy, batch_size=5, shuffle=shuffle, seed=1, drop_last=drop_last)
    epochs = [np.concatenate([b.indices for b in loader]) for _ in range(2)]
    expected = 20 if drop_last else 21
    for order in epochs:
        assert len(order) == expected and len(set(order.tolist())) == expected
    if shuffle:
        assert not np.array_equal(epochs[0], epochs[1])  # reshuffled per epoch
    else:
        assert epochs[0].tolist() == list(range(expected))
    assert len(loader) == (4 if drop_last else 5)
    assert all(len(b) == 5 for b in loader) or not drop_last


@pytest.mark.parametrize(
    ("workers", "batch_size", "shuffle", "drop_last"),
    [(1, 5, False, False), (2, 7, True, False), (3, 4, True, True), (2, 1, False, True), (2, 50, True, False)],
)
def test_parallel_is_bit_identical_to_sequential(images, heavy, workers, batch_size, shuffle, drop_last) -> None:
    ds = ImageFolder(images)
    args = dict(batch_size=batch_size, shuffle=shuffle, seed=4, drop_last=drop_last)
    seq = SequentialLoader(ds, heavy, **args)
    ref = [collect(seq) for _ in range(2)]
    with ParallelLoader(ds, heavy, num_workers=workers, prefetch=2, **args) as par:
        got = [collect(par) for _ in range(2)]
    for r, g in zip(ref, got, strict=True):
        assert_same(r, g)
    assert not np.array_equal(ref[0][0][0], ref[1][0][0]) or not shuffle  # epochs differ


@pytest.mark.parametrize("augment_in", ["workers", "main"])
def test_thread_loader_and_augment_in_main_give_the_same_batches(images, heavy, augment_in) -> None:
    ds = ImageFolder(images)
    ref = collect(SequentialLoader(ds, heavy, batch_size=4, shuffle=True, seed=2))
    with ThreadLoader(ds, heavy, batch_size=4, shuffle=True, seed=2, num_workers=2, augment_in=augment_in) as th:
        assert_same(ref, collect(th))
    with ParallelLoader(ds, heavy, batch_size=4, shuffle=True, seed=2, num_workers=2, augment_in=augment_in) as par:
        assert_same(ref, collect(par))
        assert par.stats.copied_batches == 0  # through shared memory, also for raw images
    pickled = make_loader("process-pickle", ds, heavy, LoaderSpec(4, True, 2, num_workers=2, augment_in=augment_in))
    with pickled:
        assert pickled.name == "process-pickle"
        assert_same(ref, collect(pickled))
        assert pickled.stats.copied_batches == len(ref) == 6  # every batch pickled: no ring at all


def test_float32_pipeline_through_shared_memory(images) -> None:
    ds, extreme = ImageFolder(images, limit=8), load_pipeline("extreme")
    ref = collect(SequentialLoader(ds, extreme, batch_size=3))
    with ParallelLoader(ds, extreme, batch_size=3, num_workers=2) as par:
        assert_same(ref, collect(par))


def test_batches_kept_by_the_caller_stay_valid(images, heavy) -> None:
    """The ring has workers × prefetch + 2 slots; holding every batch must not corrupt any of them."""
    ds = ImageFolder(images)
    ref = collect(SequentialLoader(ds, heavy, batch_size=2))
    with ParallelLoader(ds, heavy, batch_size=2, num_workers=2, prefetch=1) as par:
        kept = list(par)  # 11 batches held at once, 4 slots
        assert_same(ref, [(b.images, b.labels, b.indices) for b in kept])
        assert par.stats.copied_batches > 0


def test_slots_return_after_epoch_break_and_new_epoch(images, heavy) -> None:
    ds = ImageFolder(images)
    # prefetch_epochs off: every slot free between epochs (none held by the next epoch's first batches)
    with ParallelLoader(ds, heavy, batch_size=3, num_workers=2, prefetch_epochs=False) as par:
        for batch in par:
            pass
        ring = par.ring
        assert ring is not None and ring.free == ring.slots - 1  # the last batch is still held
        assert par.stats.copied_batches == 0
        del batch
        assert par.ring == replace(ring, free=ring.slots)
        for i, _batch in enumerate(par):
            if i == 1:
                break
        del _batch
        assert len(collect(par)) == 7  # the abandoned batches are drained, the next epoch is whole
        gc.collect()
        assert par.ring == replace(ring, free=ring.slots)


def test_close_leaves_no_child_and_no_shared_memory(images, heavy) -> None:
    import psutil

    par = ParallelLoader(ImageFolder(images), heavy, batch_size=4, num_workers=3)
    par.start()
    assert par.ring is not None
    pids, name = par.worker_pids, par.ring.name
    assert len(pids) == 3 and all(psutil.pid_exists(p) for p in pids)
    next(iter(par))
    par.close()
    par.close()  # twice is fine
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    assert not [entry for entry in shm_entries() if name in entry]  # no /dev/shm file, no memfd held by anyone
    with pytest.raises(ConfigError, match="closed"):
        iter(par)


def _crop_fails_on_small(tmp_path: Path) -> tuple[ImageFolder, object, Path]:
    write_image(tmp_path / "c" / "a_big.jpg", np.zeros((500, 500, 3), np.uint8))
    small = write_image(tmp_path / "c" / "b_small.jpg", np.zeros((300, 300, 3), np.uint8))
    (tmp_path / "crop.yaml").write_text("transforms:\n  - CenterCrop: {height: 400, width: 400}\n")
    return ImageFolder(tmp_path / "c"), load_pipeline(str(tmp_path / "crop.yaml")), small


@pytest.mark.parametrize("kind", ["process", "thread", "sequential"])
def test_exception_in_a_transform_reaches_the_caller_with_type_message_and_path(tmp_path, kind) -> None:
    ds, pipe, small = _crop_fails_on_small(tmp_path)
    cls = {"process": ParallelLoader, "thread": ThreadLoader, "sequential": SequentialLoader}[kind]
    extra = {} if kind == "sequential" else {"num_workers": 2}
    with cls(ds, pipe, batch_size=1, **extra) as loader, pytest.raises(WorkerError) as info:
        collect(loader)
    err = info.value
    assert err.path == str(small) and err.exc_type in ("ValueError", "CropSizeError")
    assert str(small) in str(err) and "augmenting" in str(err)
    assert "Traceback" in err.worker_traceback


def test_unreadable_image_fails_or_is_skipped_the_same_in_every_loader(tmp_path, heavy) -> None:
    for i in range(4):
        write_image(tmp_path / "c" / f"{i}.jpg", np.full((300, 300, 3), i * 40, np.uint8))
    (tmp_path / "c" / "2.jpg").write_bytes(b"")
    ds = ImageFolder(tmp_path)
    with (
        ParallelLoader(ds, heavy, batch_size=2, num_workers=2) as par,
        pytest.raises(WorkerError, match="2.jpg: cannot decode \\(empty file\\)"),
    ):
        collect(par)
    seq = collect(SequentialLoader(ds, heavy, batch_size=2, on_error="skip"))
    with ParallelLoader(ds, heavy, batch_size=2, num_workers=2, on_error="skip") as par:
        got = collect(par)
        assert par.stats.skipped == [(str(tmp_path / "c" / "2.jpg"), "cannot decode (empty file)")]
    assert_same(seq, got)
    assert [len(b[2]) for b in got] == [2, 1]


@pytest.fixture
def no_faulthandler():
    """pytest's faulthandler, inherited by forked workers, would print a killed worker's stack to the log."""
    import faulthandler
    import sys

    was = faulthandler.is_enabled()
    faulthandler.disable()
    yield
    if was:
        faulthandler.enable(file=sys.__stderr__)


@pytest.mark.parametrize(
    ("sig", "hint"),
    [
        (signal.SIGKILL, "the out-of-memory killer sends SIGKILL"),
        (signal.SIGBUS, "a worker gets SIGBUS when shared memory runs out: free memory, or lower `batch_size`"),
    ],
)
@pytest.mark.usefixtures("no_faulthandler")
def test_a_killed_worker_is_reported_with_pid_signal_and_likely_cause(images, heavy, sig, hint) -> None:
    ds = ImageFolder(images)
    with ParallelLoader(ds, heavy, batch_size=1, num_workers=2, prefetch=1) as par:
        it = iter(par)
        next(it)
        victim = par.worker_pids[0]
        os.kill(victim, sig)
        t0 = time.monotonic()
        expected = rf"worker 0 \(pid {victim}\) died: killed by signal {sig.name} \({sig.value}\); {hint}"
        with pytest.raises(WorkerDiedError, match=expected):
            for _ in it:
                pass
        assert time.monotonic() - t0 < 5


def test_a_stuck_worker_times_out(tmp_path, heavy) -> None:
    write_image(tmp_path / "c" / "a.jpg", np.zeros((300, 300, 3), np.uint8))
    os.mkfifo(tmp_path / "c" / "b.jpg")  # reading blocks for ever, like a hung network mount
    with ParallelLoader(ImageFolder(tmp_path), heavy, batch_size=1, num_workers=1, timeout=1.0) as par:
        with pytest.raises(LoaderTimeoutError, match="within the timeout"):
            collect(par)


def test_parent_that_used_opencv_threads_can_start_the_loader(images, heavy) -> None:
    """OpenCV 5: a child forked after the parent used its thread pool hangs in setNumThreads(1)."""
    cv2.setNumThreads(4)
    big = np.random.default_rng(0).integers(0, 255, (1500, 1500, 3), dtype=np.uint8)
    for _ in range(3):
        cv2.GaussianBlur(big, (0, 0), 5)
    with ParallelLoader(ImageFolder(images), heavy, batch_size=7, num_workers=2) as par:
        assert par.start_method == "fork"
        assert len(collect(par)) == 3
    assert cv2.getNumThreads() == 4  # the parent's setting is restored
    cv2.setNumThreads(1)


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_other_start_methods_give_the_same_batches(images, heavy, method) -> None:
    ds = ImageFolder(images, limit=6)
    ref = collect(SequentialLoader(ds, heavy, batch_size=4))
    with ParallelLoader(ds, heavy, batch_size=4, num_workers=1, start_method=method) as par:
        assert_same(ref, collect(par))


def test_invalid_arguments_name_the_field_and_value(images, heavy) -> None:
    ds = ImageFolder(images)
    for kwargs, text in [
        ({"batch_size": 0}, "`batch_size` must be a whole number >= 1. Found: 0"),
        ({"prefetch": 0}, "`prefetch` must be a whole number >= 1. Found: 0"),
        ({"num_workers": 0}, "`num_workers` must be at least 1"),
        ({"augment_in": "gpu"}, "`augment_in` must be 'workers' or 'main'. Found: 'gpu'"),
        ({"start_method": "teleport"}, "`start_method` must be one of"),
        ({"timeout": 0}, "`timeout` must be greater than 0"),
    ]:
        with pytest.raises(ConfigError, match=text.replace("(", r"\(").replace(")", r"\)")):
            ParallelLoader(ds, heavy, **kwargs)


def test_too_small_dev_shm_is_detected_before_allocating(images, heavy, monkeypatch) -> None:
    """The ring is checked against /dev/shm first, and the loader falls back to pickling."""
    from pdl.errors import PdlWarning, SharedMemoryError
    from pdl.loaders import process
    from pdl.loaders import ring as shm

    monkeypatch.setattr(shm, "backing", lambda: shm.SHM)
    monkeypatch.setattr(process, "backing", lambda: shm.SHM)
    monkeypatch.setattr(shm, "shm_free_bytes", lambda: 1000)
    with pytest.raises(SharedMemoryError, match=r"needs \d+ MiB in /dev/shm but only 0 MiB are free; lower `batch_size`"):
        shm.SlotRing(4, 2**20)
    ds = ImageFolder(images)
    ref = collect(SequentialLoader(ds, heavy, batch_size=4))
    with pytest.warns(PdlWarning, match="falling back to pickling"):
        par = ParallelLoader(ds, heavy, batch_size=4, num_workers=2)
        par.start()
    with par:
        assert par.ring is None
        assert_same(ref, collect(par))


def test_a_small_dev_shm_gets_a_smaller_window_not_pickling(images, heavy, monkeypatch) -> None:
    """Docker's 64 MB /dev/shm: as many slots as fit (a smaller window, said in one line), no batch pickled;
    pickling only when not even two fit."""
    import math

    import numpy as np

    from pdl.errors import PdlWarning
    from pdl.loaders import process
    from pdl.loaders import ring as shm

    assert shm.fitting_slots(6, 10, None) == 6 and shm.fitting_slots(6, 10, 60) == 6
    assert shm.fitting_slots(6, 10, 35) == 3 and shm.fitting_slots(6, 10, 5) == 2  # below 2: the ring refuses
    slot = 4 * math.prod(heavy.output_shape) * np.dtype(heavy.output_dtype).itemsize
    room = 3 * slot + slot // 2  # three slots and a half: 2 workers × prefetch 2 + 3 = 7 wanted
    monkeypatch.setattr(shm, "shm_free_bytes", lambda: room)
    monkeypatch.setattr(process, "backing", lambda: shm.SHM)  # where /dev/shm holds the ring (no memfd)
    ds = ImageFolder(images)
    sequential = SequentialLoader(ds, heavy, batch_size=4)
    refs = [collect(sequential), collect(sequential)]  # two epochs: each its own per-image seeds
    with pytest.warns(PdlWarning) as warned:
        par = ParallelLoader(ds, heavy, batch_size=4, num_workers=2)
        par.start()
    [line] = [str(w.message) for w in warned]
    assert line.startswith(f"shared memory: 7 batch slots of {slot / 2**20:.0f} MiB do not fit the ")
    assert "using 3 (a window of 1 batch(es) in flight instead of 4); enlarge /dev/shm (docker: --shm-size)" in line
    with par:
        assert par.ring is not None and par.ring.slots == 3
        for ref in refs:
            assert_same(ref, collect(par))
            assert par.stats.copied_batches == 0  # every batch through shared memory


def test_two_slots_still_prefetch_one_batch(images, heavy, monkeypatch) -> None:
    """Room for two slots only: a window of 1, one batch in flight while the loop holds one. A loop that drops each
    batch before asking for the next keeps every batch zero-copy; one that holds its batch (a plain ``for``) gets
    the batch that found no free slot pickled, never a wrong one."""
    import math

    from pdl.errors import PdlWarning
    from pdl.loaders import process
    from pdl.loaders import ring as shm

    slot = 4 * math.prod(heavy.output_shape) * np.dtype(heavy.output_dtype).itemsize
    room = 2 * slot + slot // 2
    monkeypatch.setattr(shm, "shm_free_bytes", lambda: room)
    monkeypatch.setattr(process, "backing", lambda: shm.SHM)  # where /dev/shm holds the ring (no memfd)
    ds = ImageFolder(images)
    sequential = SequentialLoader(ds, heavy, batch_size=4)
    ref, ref_next = collect(sequential), collect(sequential)  # two epochs: each its own per-image seeds
    with pytest.warns(PdlWarning, match=r"using 2 \(a window of 1 batch\(es\) in flight instead of 4\)"):
        par = ParallelLoader(ds, heavy, batch_size=4, num_workers=2)
        par.start()
    with par:
        dropped = []
        batches = iter(par)
        while (batch := next(batches, None)) is not None:
            dropped.append((batch.images.copy(), batch.labels.copy(), batch.indices.copy()))
            del batch  # dropped before the next is asked for
        assert_same(ref, dropped)
        assert par.stats.copied_batches == 0
        held = collect(par)  # a for loop: the last batch is still held when the next is dispatched
        assert_same(ref_next, held)
        assert 0 < par.stats.copied_batches < len(ref)


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_the_ring_is_a_memfd_outside_dev_shm_that_every_start_method_maps(images, heavy, start_method) -> None:
    """Docker's 64 MB /dev/shm does not bound it; the workers get its descriptor however they start."""
    ds = ImageFolder(images)
    ref = collect(SequentialLoader(ds, heavy, batch_size=4))
    workers = 2 if start_method == "fork" else 1
    with ParallelLoader(ds, heavy, batch_size=4, num_workers=workers, start_method=start_method) as par:
        par.start()
        assert par.ring is not None and par.ring.where == "memfd"
        assert not os.path.exists(f"/dev/shm/{par.ring.name}")
        assert f"memfd:{par.ring.name}" in shm_entries()  # open here (and in the workers)
        assert_same(ref, collect(par))
        assert par.stats.copied_batches == 0  # every batch written by a worker into the memfd, none pickled
        name = par.ring.name
    assert not [entry for entry in shm_entries() if name in entry]


def test_a_memfd_ring_takes_at_most_half_the_memory_available(images, heavy, monkeypatch) -> None:
    """The ring is squeezed as in a small /dev/shm, with the advice that fits: as many slots as fit, a smaller window."""
    import math

    from pdl.errors import PdlWarning
    from pdl.loaders import ring as shm

    slot = 4 * math.prod(heavy.output_shape) * np.dtype(heavy.output_dtype).itemsize
    available = 2 * (3 * slot + slot // 2)  # half of it: three slots and a half, of 7 wanted
    monkeypatch.setattr(shm, "memory_room_bytes", lambda: available)
    ds = ImageFolder(images)
    ref = collect(SequentialLoader(ds, heavy, batch_size=4))
    with pytest.warns(PdlWarning) as warned:
        par = ParallelLoader(ds, heavy, batch_size=4, num_workers=2)
        par.start()
    [line] = [str(w.message) for w in warned]
    assert f"do not fit half the {available / 2**20:.0f} MiB of memory available; using 3 (a window of 1" in line
    assert line.endswith("free memory, or raise the container's memory limit for the full window")
    with par:
        assert par.ring is not None and par.ring.where == "memfd" and par.ring.slots == 3
        assert_same(ref, collect(par))
        assert par.stats.copied_batches == 0
    monkeypatch.setattr(shm, "memory_room_bytes", lambda: 1000)
    with pytest.raises(SharedMemoryError, match=r"needs 1 MiB of memory but only 0 MiB may be taken \(half the memory"):
        shm.SlotRing(1, 2**20)


def test_the_leftover_check_sees_a_ring_not_closed() -> None:
    """What the check after every test looks for: a ring's memfd still open is listed until it is closed."""
    from pdl.loaders.ring import SlotRing

    ring = SlotRing(2, 4096)
    assert f"memfd:{ring.name}" in shm_entries()
    ring.close()
    assert f"memfd:{ring.name}" not in shm_entries()


@pytest.mark.parametrize("where", ["memfd", "/dev/shm"])
def test_a_squeezed_ring_gives_its_pages_back_between_epochs(where: str) -> None:
    """So that whatever else needs the small /dev/shm between this loader's epochs (another loader measured beside
    it, the training process) has the room."""
    import gc

    from pdl.loaders.ring import SlotRing, room

    ring = SlotRing(2, 2**20, room(where))
    try:
        held = ring.lease(ring.acquire())
        other = ring.lease(ring.acquire())
        held[:] = 1
        other[:] = 2
        assert ring.resident_bytes >= 2 * 2**20  # both slots written: both backed by pages
        del other
        gc.collect()
        ring.give_back(True)  # the epoch ended: the free slot's pages go back now
        assert 2**20 <= ring.resident_bytes < 2 * 2**20
        del held
        gc.collect()  # a slot released while idle goes back when it is
        assert ring.resident_bytes == 0
        ring.give_back(False)
        slot = ring.acquire()
        assert slot is not None and int(ring.lease(slot)[:4096].sum()) == 0  # pages come back zeroed when written again
    finally:
        ring.close()


def test_the_ring_hands_out_the_slot_freed_last_so_spare_slots_stay_untouched() -> None:
    from pdl.loaders.ring import SlotRing

    ring = SlotRing(4, 4096)
    try:
        a, b = ring.acquire(), ring.acquire()
        ring.release(a)
        assert ring.acquire() == a  # the warm slot again, not one never written
        ring.release(b)
        ring.release(a)
        assert [ring.acquire() for _ in range(4)] == [a, b, *[s for s in range(4) if s not in (a, b)][::-1]]
        assert ring.acquire() is None
    finally:
        ring.close()


def test_the_parent_builds_the_pipeline_before_forking_so_workers_share_it(images) -> None:
    pipeline = load_pipeline("medium")
    pipeline = pickle.loads(pickle.dumps(pipeline))  # as a worker or a spawned process gets it: not built yet
    assert not pipeline.built
    with ParallelLoader(ImageFolder(images), pipeline, batch_size=4, num_workers=1, start_method="fork") as par:
        par.start()
        assert pipeline.built


class _Counted(ImageFolder):
    """Counts the images read (threads share it; for the thread loader)."""

    reads = 0

    def read(self, i: int, need: tuple[int, int] | None = None) -> tuple[np.ndarray, float, float]:
        type(self).reads += 1
        return super().read(i, need)


def test_while_the_loop_holds_a_batch_the_window_is_in_flight(images, heavy) -> None:
    """``workers × prefetch`` batches are made while the loop holds one, as torch's prefetch_factor counts: with
    one worker and prefetch 1, the next batch is made during the loop's step (it used to wait until asked for:
    no prefetching at all, the stall of a sequential loop)."""
    spec = LoaderSpec(batch_size=4, num_workers=1, prefetch=1, prefetch_epochs=False)
    with ParallelLoader(ImageFolder(images), heavy, spec) as par:
        batches = iter(par)
        first = next(batches)
        assert list(par._batches) == [1]  # batch 1 dispatched while the loop holds batch 0
        deadline = time.monotonic() + 20
        while par._batches[1].outstanding and time.monotonic() < deadline:
            par._collect(par._receive(deadline, "test"))
        assert not par._batches[1].outstanding  # made without the loop asking for it
        del first
        batches.close()
    _Counted.reads = 0
    with ThreadLoader(_Counted(images), heavy, spec) as threads:
        batches = iter(threads)
        first = next(batches)
        deadline = time.monotonic() + 20
        while _Counted.reads < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _Counted.reads == 8  # batch 0 and batch 1 read, nothing further: a window of one batch
        del first
        batches.close()
