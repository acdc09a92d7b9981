"""The dataset protocol: a user's own dataset (defined here, not in pdl) is read by every loader the same way."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from pdl import ImageFolder, load_pipeline, read_image  # what a user dataset class imports
from pdl.data.protocol import NO_LABEL, describe, get_item, labels_of, uses_timed_path
from pdl.errors import ConfigError, ImageReadError, WorkerError
from pdl.loaders import LoaderSpec, make_loader

pytestmark = pytest.mark.timeout(120)

LOADERS = ("sequential", "process", "process-pickle", "thread", "torch")


class CenterCrops(ImageFolder):
    """A user's subclass: the middle quarter of each image, labelled 100 + the folder's class."""

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        image = read_image(self.path(i))
        h, w = image.shape[:2]
        return np.ascontiguousarray(image[h // 4 : h - h // 4, w // 4 : w - w // 4]), 100 + int(self.labels[i])


class Squares:
    """Not an ImageFolder at all: generated images, a label method, a name for messages, one broken item."""

    def __init__(self, n: int, broken: int | None = None) -> None:
        self.n, self.broken = n, broken

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        if i == self.broken:
            raise ValueError("sensor offline")
        return np.full((40 + i, 50, 3), i * 7 % 256, dtype=np.uint8)

    def label(self, i: int) -> int:
        return i % 3

    def describe(self, i: int) -> str:
        return f"square #{i}"


class Unpicklable(Squares):
    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.lock = threading.Lock()


@pytest.fixture(scope="module")
def pipeline():
    return load_pipeline("light")


def batches(name: str, dataset, pipeline, **options):
    spec = LoaderSpec(batch_size=4, num_workers=0 if name == "sequential" else 2, seed=3, **options)
    with make_loader(name, dataset, pipeline, spec) as loader:
        epochs = [[(b.images.copy(), b.labels.copy(), b.indices.copy(), b.skipped) for b in loader] for _ in range(2)]
        stages = loader.stats.stages
    return epochs, stages


def assert_same(a, b) -> None:
    assert len(a) == len(b)
    for epoch_a, epoch_b in zip(a, b, strict=True):
        assert len(epoch_a) == len(epoch_b)
        for (ia, la, xa, sa), (ib, lb, xb, sb) in zip(epoch_a, epoch_b, strict=True):
            assert np.array_equal(xa, xb) and np.array_equal(la, lb) and sa == sb
            assert ia.dtype == ib.dtype and np.array_equal(ia, ib)


def test_timed_path_only_for_plain_image_folders(images: Path) -> None:
    assert uses_timed_path(ImageFolder(images))
    assert not uses_timed_path(CenterCrops(images))
    assert not uses_timed_path(Squares(3))


@pytest.mark.parametrize("augment_in", ["workers", "main"])
def test_subclass_getitem_gives_the_same_batches_in_every_loader(images: Path, pipeline, augment_in: str) -> None:
    ds = CenterCrops(images, limit=13)
    reference, stages = batches("sequential", ds, pipeline, augment_in=augment_in)
    labels = np.concatenate([b[1] for b in reference[0]])
    indices = np.concatenate([b[2] for b in reference[0]])
    assert sorted(indices.tolist()) == list(range(13))
    assert labels.tolist() == [100 + int(ds.labels[i]) for i in indices]  # the labels __getitem__ gave
    plain, _ = batches("sequential", ImageFolder(images, limit=13), pipeline, augment_in=augment_in)
    assert not np.array_equal(plain[0][0][0], reference[0][0][0])  # the crop was used, not ImageFolder's read
    assert sum(t.read for t in stages) > 0 and sum(t.decode for t in stages) == 0  # __getitem__ timed as read
    for name in LOADERS[1:]:
        got, _ = batches(name, ds, pipeline, augment_in=augment_in)
        assert_same(reference, got)


def test_any_protocol_object_with_label_method(pipeline) -> None:
    ds = Squares(10)
    reference, _ = batches("sequential", ds, pipeline)
    for epoch in reference:
        for _, labels, indices, _ in epoch:
            assert labels.tolist() == [i % 3 for i in indices]
    for name in ("process", "thread", "torch"):
        assert_same(reference, batches(name, ds, pipeline)[0])


def test_labels_without_label_method_or_labels_array() -> None:
    class Bare:
        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> np.ndarray:
            return np.zeros((4, 4, 3), np.uint8)

    assert labels_of(Bare(), np.array([0, 1])).tolist() == [NO_LABEL, NO_LABEL]
    assert describe(Bare(), 1) == "item 1"


@pytest.mark.parametrize("name", ["sequential", "process", "thread", "torch"])
def test_an_error_in_getitem_names_the_item_and_can_be_skipped(pipeline, name: str) -> None:
    ds = Squares(9, broken=5)
    # the workers' loaders carry it back as a WorkerError with the same message
    with pytest.raises((ImageReadError, WorkerError), match=r"square #5: ValueError in Squares.__getitem__: sensor offline"):
        batches(name, ds, pipeline)
    epochs, _ = batches(name, ds, pipeline, on_error="skip")
    for epoch in epochs:
        kept = np.concatenate([b[2] for b in epoch]).tolist()
        assert sorted(kept) == [0, 1, 2, 3, 4, 6, 7, 8]
        skipped = [s for b in epoch for s in b[3]]
        assert skipped == [("square #5", "ValueError in Squares.__getitem__: sensor offline")]


@pytest.mark.parametrize(
    ("item", "says"),
    [
        (np.zeros((4, 4), np.uint8), "a uint8 array of shape (4, 4)"),
        (np.zeros((4, 4, 3), np.float32), "a float32 array"),
        ("a string", "returned str"),
        ((np.zeros((4, 4, 3), np.uint8), "cat"), "gave the label 'cat'"),
    ],
)
def test_an_item_that_is_not_an_image_is_an_image_read_error(item, says: str) -> None:
    class Odd(Squares):
        def __getitem__(self, i: int):
            return item

    with pytest.raises(ImageReadError, match="square #0") as info:
        get_item(Odd(1), 0)
    assert says in info.value.reason


@pytest.mark.parametrize("name", ["process", "torch"])
def test_spawn_needs_a_picklable_dataset(pipeline, name: str) -> None:
    with pytest.raises(ConfigError, match=r"Unpicklable cannot be sent to 'spawn' workers .* or use `start_method` fork"):
        batches(name, Unpicklable(4), pipeline, start_method="spawn")


def test_fork_inherits_an_unpicklable_dataset(pipeline) -> None:
    epochs, _ = batches("process", Unpicklable(6), pipeline, start_method="fork")
    assert sorted(np.concatenate([b[2] for b in epochs[0]]).tolist()) == list(range(6))
