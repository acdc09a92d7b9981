"""Memory: PSS read right, shared pages counted once, peaks sampled, the probe process cleaned up. Never speed."""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys

import numpy as np
import pytest

from pdl import ImageFolder, load_pipeline
from pdl.bench.memory import PeakSampler, pss_bytes, total_bytes
from pdl.errors import WorkerError
from pdl.loaders import LoaderSpec

from ..conftest import write_image

pytestmark = pytest.mark.timeout(120)
MB = 2**20


def test_a_process_that_touches_64_mb_shows_them() -> None:
    code = "import sys; b = bytearray(64 * 2**20); b[::4096] = b'x' * (len(b) // 4096); print('ok', flush=True); sys.stdin.read()"
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ok"
        assert pss_bytes(child.pid) >= 64 * MB
    finally:
        child.communicate("")
    assert pss_bytes(child.pid) is None  # gone


def _hold(conn) -> None:
    conn.recv()


def test_pages_a_forked_child_shares_with_its_parent_count_once() -> None:
    big = np.ones(96 * MB, dtype=np.uint8)  # touched: in the parent's memory
    alone = pss_bytes(os.getpid())
    parent_end, child_end = mp.get_context("fork").Pipe()
    child = mp.get_context("fork").Process(target=_hold, args=(child_end,))
    child.start()
    try:
        both = total_bytes([os.getpid(), child.pid])
        assert both < alone + 32 * MB  # summed RSS would count the 96 MB twice
        assert pss_bytes(os.getpid()) < alone - 32 * MB  # the parent's share of them halved
    finally:
        parent_end.send(None)
        child.join()
    assert big.sum() == 96 * MB


def test_the_peak_is_the_largest_sample_and_the_pids_are_asked_each_time() -> None:
    readings = iter([10, 20, 5, 7])  # (pid 1, pid 2) at entry, then at exit: no sample between
    asked = []

    def pids() -> list[int]:
        asked.append(len(asked))
        return [1, 2]

    with PeakSampler(pids, interval_s=60, read=lambda _pid: next(readings)) as sampler:
        pass
    assert (sampler.peak_bytes, sampler.samples, len(asked)) == (30, 2, 2)


def test_the_sampler_samples_while_the_block_runs() -> None:
    values = [100] * 3 + [900] + [100] * 1000

    def read(_pid: int) -> int:
        return values.pop(0)

    import time

    with PeakSampler(lambda: [1], interval_s=0.005, read=read) as sampler:
        deadline = time.monotonic() + 10
        while sampler.samples < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert sampler.peak_bytes == 900 and sampler.samples >= 6


@pytest.mark.parametrize("kind", ["sequential", "process"])
def test_the_probe_reports_a_peak_per_epoch_and_leaves_nothing(images, kind) -> None:
    from pdl.bench.memory import peak_memory

    before = {n for n in os.listdir("/dev/shm") if n.startswith("pdl-")}
    spec = LoaderSpec(batch_size=4, num_workers=2)
    ticks = []
    got = peak_memory(kind, ImageFolder(images), load_pipeline("light"), spec, 2, lambda: ticks.append(1))
    assert len(got["memory_peak_mb"]) == 2 and all(m > 10 for m in got["memory_peak_mb"])
    assert got["batch_mb"] == 4 * 200 * 200 * 3 / MB  # light makes 200×200 RGB uint8
    assert ticks == [1, 1]
    assert {n for n in os.listdir("/dev/shm") if n.startswith("pdl-")} == before


def test_an_error_in_the_probe_reaches_the_caller(tmp_path) -> None:
    from pdl.bench.memory import peak_memory

    write_image(tmp_path / "c" / "small.jpg", np.zeros((300, 300, 3), np.uint8))
    (tmp_path / "crop.yaml").write_text("transforms:\n  - CenterCrop: {height: 400, width: 400}\n")
    pipeline = load_pipeline(str(tmp_path / "crop.yaml"))
    spec = LoaderSpec(batch_size=1, num_workers=1)
    with pytest.raises(WorkerError, match=r"small\.jpg"):
        peak_memory("process", ImageFolder(tmp_path / "c"), pipeline, spec, 1, lambda: None)


def test_a_forkserver_loader_counts_the_forkserver_its_workers_share_pages_with(images) -> None:
    import psutil

    from pdl import ParallelLoader
    from pdl.bench.memory import counted_pids

    ds, light = ImageFolder(images), load_pipeline("light")
    me = os.getpid()
    with ParallelLoader(ds, light, batch_size=4, num_workers=1, start_method="fork") as par:
        par.start()
        assert counted_pids(par) == [me, *par.worker_pids]
    with ParallelLoader(ds, light, batch_size=4, num_workers=1, start_method="forkserver") as par:
        par.start()
        [worker] = par.worker_pids
        server = psutil.Process(worker).ppid()  # the workers' parent: the forkserver
        assert server != me and counted_pids(par) == [me, worker, server]
