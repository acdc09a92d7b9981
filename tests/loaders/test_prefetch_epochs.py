"""Prefetch across epochs (process loader, ``prefetch_epochs``): while an epoch's last batches are taken, the room
left in the window starts the next epoch's first ones. The same batches as without it, nothing made before the
loader is iterated, at most the window wasted on a break, and consistent with ``state_dict``."""

from __future__ import annotations

import numpy as np
import pytest

from pdl import ImageFolder, SequentialLoader, load_pipeline
from pdl.loaders import LoaderSpec, make_loader
from pdl.loaders.process import ParallelLoader

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def medium():
    return load_pipeline("medium")


def take(loader, count: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    it = iter(loader)
    out = []
    for i, b in enumerate(it):
        out.append((b.indices.copy(), np.array(b.images, copy=True)))
        if count is not None and i + 1 == count:
            break
    it.close()
    return out


def ahead_done(loader) -> bool:
    """Whether every batch the loader made ahead for its next epoch is finished."""
    batches = loader._ahead[1]
    if isinstance(batches, dict):  # process: chunks still out per batch
        return not any(made.outstanding for made in batches.values())
    return all(f.done() for _, futures in batches for f in futures)  # thread: futures


def assert_same(got, want) -> None:
    assert len(got) == len(want)
    for (gi, gx), (wi, wx) in zip(got, want, strict=True):
        np.testing.assert_array_equal(gi, wi)
        np.testing.assert_array_equal(gx, wx)


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_it_is_on_by_default_and_off_when_asked(images, medium, kind) -> None:
    """On by default (measured: a stepping loop's stall 3.8% → 0.4%, images/s without a step unchanged)."""
    assert LoaderSpec().prefetch_epochs is True
    spec = LoaderSpec(batch_size=4, num_workers=1)
    with make_loader(kind, ImageFolder(images), medium, spec) as on:
        take(on)
        assert on._ahead is not None and on._ahead[0] == 1
    with make_loader(kind, ImageFolder(images), medium, spec, prefetch_epochs=False) as off:
        take(off)
        assert off._ahead is None


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("kind", ["process", "thread"])
def test_the_next_epoch_starts_during_this_one_and_batches_stay_the_same(images, medium, kind, workers, drop_last) -> None:
    spec = LoaderSpec(batch_size=4, shuffle=True, seed=5, drop_last=drop_last, num_workers=workers, prefetch=2)
    reference = SequentialLoader(ImageFolder(images), medium, spec)
    with make_loader(kind, ImageFolder(images), medium, spec, prefetch_epochs=True) as loader:
        loader.start()
        assert loader._ahead is None  # nothing made before the loader is iterated
        for epoch in range(3):
            assert_same(take(loader), take(reference))
            assert loader._ahead is not None and loader._ahead[0] == epoch + 1  # the next epoch's first batches
            assert 0 < len(loader._ahead[1]) <= workers * 2  # within the window
            loader.settle()
            assert ahead_done(loader)  # done, kept for the next epoch


def test_a_break_wastes_no_more_than_the_window_and_the_next_epoch_is_right(images, medium) -> None:
    spec = LoaderSpec(batch_size=4, shuffle=True, seed=5, num_workers=2, prefetch=2)
    reference = SequentialLoader(ImageFolder(images), medium, spec)
    epochs = [take(reference) for _ in range(3)]  # 21 images: 6 batches an epoch
    with ParallelLoader(ImageFolder(images), medium, spec, prefetch_epochs=True) as loader:
        assert_same(take(loader, 2), epochs[0][:2])  # a break before the epoch was all dispatched: nothing ahead
        assert loader._ahead is None
        assert_same(take(loader, 6), epochs[1])  # the last batch taken, then a break: the ahead batches are dropped
        assert loader._ahead is None
        assert_same(take(loader), epochs[2])
        loader.settle()
        ahead = len(loader._ahead[1]) if loader._ahead else 0
        assert ahead > 0 and loader.ring is not None and loader.ring.free == loader.ring.slots - ahead  # no slot lost


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_a_resumed_state_drops_the_batches_made_ahead(images, medium, kind) -> None:
    spec = LoaderSpec(batch_size=4, shuffle=True, seed=5, num_workers=2, prefetch=2)
    reference = SequentialLoader(ImageFolder(images), medium, spec)
    epochs = [take(reference) for _ in range(2)]
    with make_loader(kind, ImageFolder(images), medium, spec, prefetch_epochs=True) as loader:
        take(loader)
        assert loader._ahead is not None and loader._ahead[0] == 1
        state = loader.state_dict()
        assert (state["epoch"], state["batches"]) == (1, 0)  # batches made ahead are not handed out
        rewind = dict(state, epoch=0, batches=3)
        loader.load_state_dict(rewind)  # back to the middle of epoch 0: epoch 1's batches are no use
        assert_same(take(loader), epochs[0][3:])
        assert_same(take(loader), epochs[1])


def test_tune_names_the_option_in_the_call_it_prints() -> None:
    from pdl.bench.tune import loader_call

    assert loader_call("ParallelLoader", 64, 1, 2) == "ParallelLoader(ds, pipe, batch_size=64, num_workers=1, prefetch=2)"
    assert loader_call("ParallelLoader", 64, 1, 2, True) == loader_call("ParallelLoader", 64, 1, 2)  # the default
    assert loader_call("ParallelLoader", 64, 1, 2, False).endswith("prefetch=2, prefetch_epochs=False)")


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_a_measurement_settles_the_work_started_ahead_inside_the_epochs_timed_window(images, medium, kind) -> None:
    from pdl.bench.timing import time_epoch

    spec = LoaderSpec(batch_size=4, shuffle=True, seed=5, num_workers=2, prefetch=2)
    with make_loader(kind, ImageFolder(images), medium, spec, prefetch_epochs=True) as loader:
        loader.start()
        timing = time_epoch(loader)
        assert timing.images == 21 and loader._ahead is not None
        assert ahead_done(loader)  # done before the clock stopped


@pytest.mark.parametrize(("kind", "honours"), [("process", True), ("thread", True), ("sequential", False), ("torch", False)])
def test_the_loaders_that_prefetch_across_epochs_say_so(kind, honours) -> None:
    """What `pdl tune` reads to say ``prefetch_epochs=False`` in the call it prints when it is off: thread too."""
    from pdl.loaders import loader_class

    assert loader_class(kind).prefetches_epochs is honours
