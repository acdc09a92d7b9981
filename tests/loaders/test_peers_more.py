"""Grain, tf.data and DALI beside pdl: grain and tfdata make the sequential loader's batches bit for bit; dali runs an
equivalent pipeline (same shapes, pixels within a bound), refuses one without DALI equivalents naming the transform;
a missing extra is one line; close() leaves no process, thread or shared memory behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from pdl.cli import app
from pdl.data.folder import ImageFolder
from pdl.data.pipeline import load_pipeline
from pdl.errors import ConfigError, MissingDependencyError
from pdl.loaders import REGISTRY, SequentialLoader, loader_class, make_loader
from pdl.report.runs import run_grid

from ..factories import point, results
from ..processes import GRAIN_PREFIX

runner = CliRunner()
COMMON: dict[str, Any] = dict(batch_size=5, shuffle=True, seed=7)


def epochs(loader: Any, count: int) -> list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    return [[(b.images.copy(), b.labels, b.indices) for b in loader] for _ in range(count)]


def same(got: list[Any], want: list[Any]) -> None:
    assert [len(e) for e in got] == [len(e) for e in want]
    for g_epoch, w_epoch in zip(got, want, strict=True):
        for g, w in zip(g_epoch, w_epoch, strict=True):
            for g_arr, w_arr in zip(g, w, strict=True):
                assert g_arr.dtype == w_arr.dtype and np.array_equal(g_arr, w_arr)


def blocks() -> set[str]:
    return {n for n in os.listdir("/dev/shm") if n.startswith(GRAIN_PREFIX)}


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def threads_down_to(count: int, within_s: float = 2.0) -> int:
    """The process's threads once they are ``count`` or fewer, or after ``within_s``: a thread joined by close()
    can still be in /proc/self/task for a moment while the OS finishes it (CI saw 8 where 7 were left)."""
    deadline = time.monotonic() + within_s
    while threads() > count and time.monotonic() < deadline:
        time.sleep(0.02)
    return threads()


@pytest.mark.alone  # its blocks (psm_*) name no pid: under xdist, another test's check would count them
@pytest.mark.timeout(120)
def test_grain_makes_the_sequential_batches_resumes_and_leaves_nothing(images: Path) -> None:
    pytest.importorskip("grain")
    dataset, pipeline = ImageFolder(images), load_pipeline("medium")  # random flips and jitter: seeds show
    want = epochs(SequentialLoader(dataset, pipeline, **COMMON), 3)
    before_blocks, before_threads = blocks(), {t.name for t in threading.enumerate()}
    with make_loader("grain", dataset, pipeline, None, num_workers=2, **COMMON) as loader:
        got = epochs(loader, 2)
        assert len(loader.worker_pids) == 2
        first = next(iter(loader))  # epoch 2 left after one batch; resumed there, the stream starts again
        loader.load_state_dict(loader.state_dict())
        rest = [(b.images.copy(), b.labels, b.indices) for b in loader]
        pids = loader.worker_pids
    same(got, want[:2])
    same([[(first.images.copy(), first.labels, first.indices), *rest]], want[2:])
    del first
    assert all(not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z" for pid in pids)
    assert blocks() - before_blocks == set()
    assert {t.name for t in threading.enumerate()} - before_threads == set()


@pytest.mark.alone  # its blocks (psm_*) name no pid: under xdist, another test's check would count them
@pytest.mark.timeout(120)
def test_grain_leaves_nothing_to_the_resource_tracker(images: Path, tmp_path: Path) -> None:
    """The issue's finding: a plain Grain script that still holds batches at exit leaves their shared_memory blocks
    for the resource tracker to warn about and remove. Through pdl, close() unlinks them all, held ones too."""
    pytest.importorskip("grain")
    script = tmp_path / "run_grain.py"
    script.write_text(
        textwrap.dedent(f"""
        from pdl.data.folder import ImageFolder
        from pdl.data.pipeline import load_pipeline
        from pdl.loaders import make_loader

        if __name__ == "__main__":
            with make_loader("grain", ImageFolder({str(images)!r}), load_pipeline("light"), None, num_workers=2,
                             batch_size=4) as loader:
                kept = [b.images for b in loader][:2]  # still held at close, and at exit
            assert int(kept[0].sum()) >= 0  # readable after close
        """)
    )
    before = blocks()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr
    assert "leaked" not in done.stderr and "resource_tracker" not in done.stderr, done.stderr
    assert blocks() - before == set()


@pytest.mark.timeout(60)
def test_tfdata_makes_the_sequential_batches_and_its_threads_end(images: Path) -> None:
    pytest.importorskip("tensorflow")
    dataset, pipeline = ImageFolder(images), load_pipeline("medium")
    want = epochs(SequentialLoader(dataset, pipeline, **COMMON), 2)
    with make_loader("tfdata", dataset, pipeline, None, num_workers=2, **COMMON) as loader:
        got = epochs(loader, 2)
    same(got, want)
    after_first = threads()  # TensorFlow's process-wide pools start once, at first use
    names = {t.name for t in threading.enumerate()}
    with make_loader("tfdata", dataset, pipeline, None, num_workers=2, **COMMON) as loader:
        assert len(list(loader)) == 5
        assert len(next(iter(loader))) == 5  # an epoch left early: the next one starts from its first batch
        assert len(list(loader)) == 5
    assert threads_down_to(after_first) <= after_first  # a second loader's threads all ended with it
    assert {t.name for t in threading.enumerate()} <= names


def centre(tmp_path: Path) -> Path:
    """A pipeline with no randomness, so DALI's pixels can be compared with pdl's: Resize, then CenterCrop."""
    path = tmp_path / "centre.yaml"
    path.write_text("name: centre\ntransforms:\n  - Resize: {height: 96, width: 96}\n  - CenterCrop: {height: 64, width: 64}\n")
    return path


@pytest.mark.timeout(60)
def test_dali_runs_an_equivalent_pipeline_close_to_pdls(images: Path, tmp_path: Path) -> None:
    pytest.importorskip("nvidia.dali")
    dataset = ImageFolder(images)
    for pipeline in (load_pipeline("light"), load_pipeline(centre(tmp_path))):
        want = epochs(SequentialLoader(dataset, pipeline, **COMMON), 2)
        before = threads()
        with make_loader("dali", dataset, pipeline, None, num_workers=2, **COMMON) as loader:
            got = epochs(loader, 2)
            assert len(next(iter(loader))) == 5 and len(list(loader)) == 5  # left early, then whole
        assert threads_down_to(before) <= before  # DALI's thread pool ended with its pipeline
        for g_epoch, w_epoch in zip(got, want, strict=True):
            assert len(g_epoch) == len(w_epoch) == 5
            for (g_img, g_lab, g_idx), (w_img, w_lab, w_idx) in zip(g_epoch, w_epoch, strict=True):
                assert g_img.shape == w_img.shape and g_img.dtype == w_img.dtype == np.uint8
                assert np.array_equal(g_lab, w_lab) and np.array_equal(g_idx, w_idx)
                if pipeline.name == "centre":  # the same window: DALI's decode and resize against OpenCV's
                    diff = np.abs(g_img.astype(np.int16) - w_img)
                    assert diff.mean() < 0.5 and diff.max() <= 2, (diff.mean(), diff.max())


@pytest.mark.timeout(60)
def test_dali_refuses_a_pipeline_without_dali_equivalents_naming_the_transform(images: Path, tmp_path: Path) -> None:
    pytest.importorskip("nvidia.dali")
    with pytest.raises(ConfigError, match=r"no DALI equivalent of ColorJitter \(pipeline 'medium'\)"):
        make_loader("dali", ImageFolder(images), load_pipeline("medium"), None, num_workers=1)
    args = ["run", "--inputs", str(images), "--loaders", "sequential,dali", "--pipeline", "heavy", "--results", str(tmp_path)]
    res = runner.invoke(app, [*args, "--limit", "8", "--repeats", "1"], env={"COLUMNS": "200"})
    assert res.exit_code == 2, res.output
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("error: the dali loader has no DALI equivalent of ") and "pipeline 'heavy'" in line


@pytest.mark.parametrize(("name", "module"), [("grain", "grain"), ("tfdata", "tensorflow"), ("dali", "nvidia")])
def test_a_missing_extra_is_one_line_naming_it(name: str, module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for loaded in [n for n in sys.modules if n == module or n.startswith(module + ".")] or [module]:
        monkeypatch.setitem(sys.modules, loaded, None)
    monkeypatch.delitem(sys.modules, REGISTRY[name].target.partition(":")[0], raising=False)
    with pytest.raises(MissingDependencyError) as info:
        loader_class(name)
    message = str(info.value)
    assert message.startswith(f"the {name} loader needs the '{name}' extra (") and "\n" not in message
    assert message.endswith(f": pip install 'pdl[{name}]'")


def test_grain_on_an_older_python_says_which_it_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, "grain", replace(REGISTRY["grain"], python=(99, 0)))
    with pytest.raises(MissingDependencyError, match=r"^the grain loader needs Python 99\.0 or newer .*; this is 3\.\d+$"):
        loader_class("grain")


def test_the_run_table_says_equivalent_for_dali_and_no_alarm() -> None:
    base = [1.0, 1.0]
    pts = [
        point("sequential", 0, base, base, same_batches=True),
        point("process", 2, base, [0.5, 0.5], same_batches=True),
        point("grain", 2, base, [0.6, 0.6], same_batches=True),
        point("dali", 2, base, [0.6, 0.6], same_batches=False),
    ]
    grid = run_grid(results("run", pts))
    column = grid.columns.index("same batches")
    assert [row[column] for row in grid.rows] == ["yes", "yes", "yes", "equivalent"]
    assert not any(note.startswith("NO:") for note in grid.notes)
    assert any(note.startswith("equivalent: dali ran its own operators") for note in grid.notes)
