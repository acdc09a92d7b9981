"""The peer loaders (report, BatchUp, SPDL, torchdata.nodes): the sequential loader's batches bit for bit, pdl's
errors, a missing extra named with its pip command, a killed worker reported in time, nothing left behind."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from typer.testing import CliRunner

from pdl.cli import app
from pdl.data import synth as inputs
from pdl.data.folder import ImageFolder
from pdl.data.pipeline import Pipeline, load_pipeline
from pdl.errors import PdlError
from pdl.loaders import REGISTRY, SequentialLoader, installed, make_loader

PEERS = ["report", "batchup", "batchup-thread", "spdl", "spdl-process", "torchdata"]
EXTRA_MODULE = {"batchup": "batchup", "spdl": "spdl", "torchdata": "torchdata"}


def needs(name: str) -> None:
    extra = REGISTRY[name].extra
    if extra is not None:
        pytest.importorskip(EXTRA_MODULE[extra])


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """20 small photo-like JPEGs, one of them unreadable."""
    root = tmp_path_factory.mktemp("peers")
    inputs.generate(root, classes=2, per_class=10, seed=0)
    bad = sorted(root.glob("class_001/*.jpg"))[4]
    bad.write_bytes(b"not an image")
    return root, str(bad)


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return load_pipeline("heavy")  # random transforms: a mixed-up seed or a shared Compose shows


def batches(loader: Any, epochs: int = 2) -> tuple[list[list[tuple[np.ndarray, ...]]], list[list[str]]]:
    got, skipped = [], []
    with loader:
        for _ in range(epochs):
            got.append([(b.images.copy(), b.labels, b.indices) for b in loader])
            skipped.append([path for path, _ in loader.stats.skipped])
    return got, skipped


def foreign_shm() -> set[str]:
    """What a peer could leave in /dev/shm: joblib's memmap folders of this process (BatchUp's pool)."""
    me = str(os.getpid())
    try:
        return {n for n in os.listdir("/dev/shm") if n.startswith(f"joblib_memmapping_folder_{me}_")}
    except FileNotFoundError:
        return set()


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", PEERS)
def test_same_batches_as_sequential_skipping_the_same_image(name: str, broken: tuple[Path, str], pipeline: Pipeline) -> None:
    needs(name)
    root, bad = broken
    dataset = ImageFolder(root)
    common: dict[str, Any] = dict(batch_size=3, shuffle=True, seed=5, on_error="skip")
    want, want_skipped = batches(SequentialLoader(dataset, pipeline, **common))
    got, got_skipped = batches(make_loader(name, dataset, pipeline, None, num_workers=2, **common))
    assert got_skipped == want_skipped == [[bad], [bad]]
    assert not np.array_equal(got[0][0][2], got[1][0][2])  # reshuffled per epoch
    assert [len(e) for e in got] == [len(e) for e in want] == [7, 7]
    for got_epoch, want_epoch in zip(got, want, strict=True):
        for g, w in zip(got_epoch, want_epoch, strict=True):
            for g_arr, w_arr in zip(g, w, strict=True):
                assert g_arr.dtype == w_arr.dtype and np.array_equal(g_arr, w_arr)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["report", "spdl"])
def test_an_unreadable_image_is_an_error_naming_it(name: str, broken: tuple[Path, str], pipeline: Pipeline) -> None:
    needs(name)
    root, bad = broken
    with pytest.raises(PdlError, match=Path(bad).name):
        batches(make_loader(name, ImageFolder(root), pipeline, None, num_workers=2, batch_size=4), 1)


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["report", "batchup", "spdl-process", "torchdata"])
def test_a_killed_worker_is_an_error_naming_the_loader_and_nothing_is_left(
    name: str, broken: tuple[Path, str], pipeline: Pipeline
) -> None:
    needs(name)
    root, _ = broken
    shm_before = foreign_shm()
    loader = make_loader(name, ImageFolder(root), pipeline, None, num_workers=2, batch_size=2, on_error="skip", timeout=20)
    pids = set(loader.worker_pids)
    with pytest.raises(PdlError, match=rf"^{name}: ") as info:
        epoch = iter(loader)
        next(epoch)
        workers = [pid for pid in loader.worker_pids if pid != getattr(loader, "_manager_pid", None)]
        pids |= set(loader.worker_pids)
        os.kill(workers[0], signal.SIGKILL)
        for _ in range(100):  # several epochs: the dead worker's share is needed sooner or later
            next(epoch, None) or (epoch := iter(loader))
    assert "died" in str(info.value) or "broken" in str(info.value)
    loader.close()
    alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    assert foreign_shm() - shm_before == set()


runner = CliRunner()


def hide(package: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """As if ``package`` were not installed: it and its submodules unimportable."""
    for name in [n for n in sys.modules if n == package or n.startswith(package + ".")] or [package]:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("name", ["batchup", "spdl-process", "torchdata"])
def test_a_missing_extra_is_one_line_with_the_pip_command_and_exit_2(
    name: str, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = REGISTRY[name].extra
    assert extra is not None
    hide(EXTRA_MODULE[extra], monkeypatch)
    module = REGISTRY[name].target.partition(":")[0]
    monkeypatch.delitem(sys.modules, module, raising=False)
    args = ["run", "--inputs", str(images), "--loaders", name, "--results", str(tmp_path), "--limit", "8", "--repeats", "1"]
    res = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 2, res.output
    [line] = res.stderr.strip().splitlines()
    assert line.startswith(f"error: the {name} loader needs the '{extra}' extra ({EXTRA_MODULE[extra]}")
    assert line.endswith(f": pip install 'pdl[{extra}]'")
    assert "Traceback" not in res.output


def test_loaders_all_is_every_installed_loader_and_says_which_were_left_out(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide("torchdata", monkeypatch)
    monkeypatch.delitem(sys.modules, "pdl.loaders.peers.torchdata", raising=False)
    present, missing = installed()
    assert "torchdata" in missing and "torchdata" not in present
    assert present[:4] == ("sequential", "process", "process-pickle", "thread") and "report" in present
    run_cmd = sys.modules["pdl.cli.run"]
    seen = {}
    monkeypatch.setattr(run_cmd, "measure_and_report", lambda exp, *a, **k: seen.setdefault("loaders", exp.loaders))
    res = runner.invoke(app, ["run", "--inputs", str(images), "--loaders", "all", "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert seen["loaders"] == present
    assert "--loaders all: left out torchdata (not installed: pip install 'pdl[peers]')" in res.stderr


@pytest.mark.timeout(90)
def test_a_run_records_same_batches_and_the_peer_version(images: Path, tmp_path: Path) -> None:
    pytest.importorskip("batchup")
    args = ["run", "--inputs", str(images), "--loaders", "report,batchup-thread", "--results", str(tmp_path)]
    res = runner.invoke(app, [*args, "--limit", "8", "--batch-size", "4", "--repeats", "1", "--pipeline", "light"])
    assert res.exit_code == 0, res.output
    assert "same batches" in res.stdout
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    points = {p["loader"]: p for p in data["points"]}
    assert [points[n]["same_batches"] for n in ("sequential", "report", "batchup-thread")] == [True, True, True]
    assert points["batchup-thread"]["loader_version"] == "0.2.3" and points["report"]["loader_version"] is None


@pytest.mark.timeout(60)
def test_report_workers_sleep_between_epochs(broken: tuple[Path, str], pipeline: Pipeline) -> None:
    """The report's workers poll only within an epoch of their own: parked between epochs, they take no CPU from the
    loaders measured beside them (spinning, two would take a second of CPU each in the second waited here)."""
    root, _ = broken
    loader = make_loader("report", ImageFolder(root), pipeline, batch_size=4, num_workers=2, on_error="skip")
    with loader:
        for _ in loader:
            pass
        procs = [psutil.Process(pid) for pid in loader.worker_pids]
        before = [sum(p.cpu_times()[:2]) for p in procs]
        time.sleep(1.0)
        used = [sum(p.cpu_times()[:2]) - b for p, b in zip(procs, before, strict=True)]
        assert max(used) < 0.3, used
        assert len(list(loader)) == 5  # and the next epoch wakes them


def test_a_pool_whose_manager_reads_a_message_cut_short_still_stops() -> None:
    """A worker killed while it sent its result leaves ProcessPoolExecutor's manager thread reading the rest for
    ever, and Python joins that thread at exit: the test session hung there. ``stop_pool`` ends that thread."""
    import multiprocessing as mp
    import struct
    from concurrent.futures import ProcessPoolExecutor

    from pdl.loaders.peers.common import Reaper, stop_pool

    executor = ProcessPoolExecutor(1, mp_context=mp.get_context("fork"))
    worker = executor.submit(os.getpid).result(timeout=20)
    reaper = Reaper()
    reaper.add([worker])
    manager = executor._executor_manager_thread
    assert manager is not None
    # what the killed worker left in the result pipe: a message's length, then only the start of it
    os.write(executor._result_queue._writer.fileno(), struct.pack("!i", 1000) + b"x" * 10)
    time.sleep(0.5)
    assert manager.is_alive()  # reading the 990 bytes that never come
    assert stop_pool(executor, reaper) == 1  # the worker, idle, was stopped
    assert not manager.is_alive()
    assert not psutil.pid_exists(worker) or psutil.Process(worker).status() == psutil.STATUS_ZOMBIE
