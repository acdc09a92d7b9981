"""Resuming mid-epoch: ``state_dict()`` / ``load_state_dict()``. A state taken after any batch, by any pdl loader,
given to any other pdl loader with any worker count, yields the batches an uninterrupted run would have yielded
next, bit for bit, then the next epoch; a state of other work is refused in one line."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from pdl import ImageFolder, SequentialLoader, load_pipeline
from pdl.data.synth import generate
from pdl.errors import ConfigError
from pdl.loaders import LoaderSpec, make_loader

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
SPECS = {  # 21 images in batches of 5: five batches an epoch (4 for rank 1 of 2 with 11 images: 5, 5, 1 → 3)
    "shuffled": LoaderSpec(batch_size=5, shuffle=True, seed=3),
    "sharded": LoaderSpec(batch_size=5, shuffle=True, seed=3, rank=1, world_size=2),
}
POINTS = [0, 1, 2, "last", "end"]  # before the first batch, after it, mid-epoch, before the last, the whole epoch


@pytest.fixture(scope="module")
def medium():
    return load_pipeline("medium")


def batches(loader, count: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    it = iter(loader)
    out = [(b.indices.copy(), np.array(b.images, copy=True)) for b in islice(it, count)]
    if hasattr(it, "close"):
        it.close()  # an early break, as a training loop stopped for a checkpoint would
    return out


def uninterrupted(images: Path, medium, spec: LoaderSpec) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    loader = SequentialLoader(ImageFolder(images), medium, spec)
    return [batches(loader), batches(loader)]


def assert_same(got, want) -> None:
    assert len(got) == len(want)
    for (gi, gx), (wi, wx) in zip(got, want, strict=True):
        np.testing.assert_array_equal(gi, wi)
        np.testing.assert_array_equal(gx, wx)


def resume_and_check(images: Path, medium, spec: LoaderSpec, point, first: str, then: str, workers: int) -> None:
    epochs = uninterrupted(images, medium, spec)
    per_epoch = len(epochs[0])
    taken = {"last": per_epoch - 1, "end": per_epoch}.get(point, point)
    with make_loader(first, ImageFolder(images), medium, spec) as original:
        assert_same(batches(original, taken), epochs[0][:taken])
        state = json.loads(json.dumps(original.state_dict()))  # it goes into a checkpoint
    if point == "end":
        assert (state["epoch"], state["batches"]) == (1, 0)
    else:
        assert (state["epoch"], state["batches"]) == (0, taken)
    options = {} if then == "sequential" else {"num_workers": workers}
    with make_loader(then, ImageFolder(images), medium, spec, **options) as resumed:
        resumed.load_state_dict(state)
        assert resumed.state_dict() == state  # before iterating it says where it will carry on
        if point != "end":
            assert_same(batches(resumed), epochs[0][taken:])
        assert_same(batches(resumed), epochs[1])  # then the next epoch, whole


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("spec_name", list(SPECS))
@pytest.mark.parametrize(("kind", "workers"), [("sequential", 0), ("process", 1), ("process", 2), ("thread", 1), ("thread", 2)])
def test_a_state_from_the_sequential_loader_resumes_on_every_loader(images, medium, kind, workers, spec_name, point) -> None:
    resume_and_check(images, medium, SPECS[spec_name], point, "sequential", kind, workers)


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize(
    ("first", "then", "workers"), [("process", "thread", 1), ("thread", "process", 2), ("process", "sequential", 0)]
)
def test_a_state_taken_while_workers_prefetch_counts_only_the_batches_handed_out(
    images, medium, first, then, workers, point
) -> None:
    resume_and_check(images, medium, SPECS["shuffled"], point, first, then, workers)


def test_a_state_of_other_work_is_refused_in_one_line(images: Path, tmp_path: Path, medium) -> None:
    spec = SPECS["shuffled"]
    loader = SequentialLoader(ImageFolder(images), medium, spec)
    batches(loader, 2)
    state = loader.state_dict()
    other = tmp_path / "other"
    generate(other, classes=3, per_class=7, seed=9)  # as many images, other files
    cases = [
        (SequentialLoader(ImageFolder(other), medium, spec), "dataset_fingerprint is '"),
        (SequentialLoader(ImageFolder(images, limit=20), medium, spec), "dataset_length is 21 in the state, 20 here"),
        (
            SequentialLoader(ImageFolder(images), medium, batch_size=4, shuffle=True, seed=3),
            "batch_size is 5 in the state, 4 here",
        ),
        (SequentialLoader(ImageFolder(images), medium, batch_size=5, shuffle=True, seed=4), "seed is 3 in the state, 4 here"),
        (SequentialLoader(ImageFolder(images), medium, SPECS["sharded"]), "rank is 0 in the state, 1 here"),
    ]
    for target, words in cases:
        with pytest.raises(ConfigError) as err:
            target.load_state_dict(state)
        assert words in str(err.value) and "\n" not in str(err.value)
    for bad, words in (({"epoch": 1}, "not a pdl loader state"), ({**state, "batches": 99}, "no position in an epoch of 5")):
        with pytest.raises(ConfigError, match=words):
            SequentialLoader(ImageFolder(images), medium, spec).load_state_dict(bad)
    assert state["dataset_length"] == 21 and set(state) == {
        "format", "epoch", "batches", "dataset_length", "dataset_fingerprint", "seed", "batch_size", "shuffle",
        "drop_last", "rank", "world_size",
    }  # fmt: skip
