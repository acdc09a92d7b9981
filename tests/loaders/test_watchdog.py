"""Without `timeout`, no loader waits for ever: past the watchdog's bound without progress, one line naming what it
waited for, and an exit code of its own; with `timeout`, the timeout's error as before."""

from __future__ import annotations

import time

import numpy as np
import pytest

from pdl import load_pipeline
from pdl.errors import LoaderTimeoutError, NoProgressError
from pdl.loaders.ceiling import CeilingLoader
from pdl.loaders.process import ParallelLoader
from pdl.loaders.thread import ThreadLoader
from pdl.loaders.watchdog import Watchdog

pytestmark = pytest.mark.timeout(30)


class Hang:
    """Every read takes 1 s: a hang to a watchdog of 0.3 s, short enough for the workers to end at close."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> np.ndarray:
        time.sleep(1.0)
        return np.zeros((8, 8, 3), np.uint8)


def test_the_watchdog_bound_grows_with_the_slowest_unit_seen_and_names_what_it_waited_for() -> None:
    dog = Watchdog()
    assert dog.bound_s == 60.0  # nothing seen yet: the floor
    dog.saw(2.0)
    dog.saw(9.0)
    dog.saw(1.0)
    assert dog.bound_s == 90.0  # 10 × the slowest chunk seen
    error = dog.expired("the process loader", "batch 3 of epoch 0", "chunk")
    assert isinstance(error, LoaderTimeoutError) and error.exit_code == 6
    assert str(error) == (
        "the process loader: no chunk finished for 90 s while waiting for batch 3 of epoch 0 (the watchdog: 10 × "
        "the longest chunk seen, at least 60 s); a worker or the pipeline hangs (a transform or a read that never "
        "returns?): find what blocks it, or set `timeout` to wait longer"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "said"),
    [
        (ParallelLoader, "the process loader: no chunk finished for 0.3 s while waiting for batch 0 of epoch 0"),
        (ThreadLoader, "the thread loader: no chunk finished for 0.3 s while waiting for batch 0 of epoch 0"),
        (CeilingLoader, "the ceiling: no batch finished for 0.3 s while waiting for epoch 0 (copies [0, 1] not done)"),
    ],
)
def test_without_a_timeout_a_hang_ends_in_one_line_with_exit_code_6(kind: type, said: str) -> None:
    loader = kind(Hang(), load_pipeline("light"), batch_size=2, num_workers=2)
    loader.watchdog = Watchdog(floor_s=0.3)
    with loader:
        loader.start()
        t0 = time.monotonic()
        with pytest.raises(NoProgressError) as caught:
            list(loader)
        assert time.monotonic() - t0 < 5  # the bound, a slice, and a bounded close: not the hour of a real hang
    assert str(caught.value).startswith(said) and caught.value.exit_code == 6
    assert "set `timeout` to wait longer" in str(caught.value)
    assert loader.worker_pids == []  # the loader closed itself: no worker left


@pytest.mark.slow
def test_a_timeout_given_keeps_its_own_error() -> None:
    with ThreadLoader(Hang(), load_pipeline("light"), batch_size=2, num_workers=2, timeout=0.3) as loader:
        with pytest.raises(LoaderTimeoutError) as caught:
            list(loader)
    assert type(caught.value) is LoaderTimeoutError and caught.value.exit_code == 2
