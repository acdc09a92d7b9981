"""--cache cold: eviction from the page cache, the check that it worked, and what a run records and says."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pdl import ImageFolder
from pdl.cli import app
from pdl.data.cache import ColdCache, Eviction, dataset_files, describe, evict, resident_pages, resident_share
from pdl.errors import PdlWarning
from pdl.machine.host import filesystem

pytestmark = pytest.mark.timeout(120)


def cached_file(folder: Path, name: str = "data.bin", size: int = 1 << 20) -> Path:
    """A file written to disk (fsync: dirty pages cannot be evicted) and then read, so its pages are cached."""
    path = folder / name
    with path.open("wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
    path.read_bytes()
    return path


def test_resident_pages_counts_a_read_file(tmp_path: Path) -> None:
    path = cached_file(tmp_path)
    pages = resident_pages(str(path))
    if pages is None:
        pytest.skip("mincore is not available here")
    resident, total = pages
    assert total == (1 << 20) // os.sysconf("SC_PAGE_SIZE") and resident == total


def test_evict_drops_a_files_pages_or_says_it_could_not(tmp_path: Path) -> None:
    path = cached_file(tmp_path)
    fs = filesystem(path)
    result = evict([str(path)])
    assert (result.files, result.failed) == (1, 0)
    if result.resident is None:
        assert "could not check" in describe(result)
    elif fs is not None and fs[0] in ("tmpfs", "ramfs"):
        assert result.worked is False and "ignored the eviction" in describe(result, fs[0])
    else:  # a disk filesystem: the pages are gone
        assert result.resident == 0.0 and result.worked is True
        assert resident_pages(str(path)) == (0, 256 * 4096 // os.sysconf("SC_PAGE_SIZE"))


def test_tmpfs_keeps_its_pages_and_is_reported(tmp_path: Path) -> None:
    fs = filesystem("/dev/shm")
    if fs is None or fs[0] != "tmpfs" or resident_pages("/proc/self/exe") is None:
        pytest.skip("no tmpfs at /dev/shm, or no mincore")
    path = Path("/dev/shm") / f"pdl-test-cache-{os.getpid()}"
    try:
        path.write_bytes(b"x" * 65536)

        class Files:
            def __init__(self) -> None:
                self.paths = [os.fsencode(path)]

        cold = ColdCache(Files())
        with pytest.warns(PdlWarning, match=r"filesystem \(tmpfs\) ignored the eviction \(100% of the checked pages"):
            cold.evict()
        assert cold.resident == 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cold.evict()  # said once, not every epoch
    finally:
        path.unlink()


def test_missing_files_are_counted_not_raised(tmp_path: Path) -> None:
    result = evict([str(tmp_path / "gone.jpg")])
    assert (result.files, result.failed, result.resident) == (1, 1, None)
    assert resident_share([]) is None


def test_dataset_files_from_paths_or_path_method(images: Path) -> None:
    ds = ImageFolder(images, limit=3)
    assert dataset_files(ds) == [ds.path(i) for i in range(3)]

    class Named:
        def __len__(self) -> int:
            return 2

        def path(self, i: int) -> str:
            return f"/data/{i}.png"

    assert dataset_files(Named()) == ["/data/0.png", "/data/1.png"]
    assert dataset_files(object()) == []
    assert "nothing was evicted" in describe(Eviction(0, 0, None))


def test_run_cache_cold_records_it_and_says_so(images: Path, tmp_path: Path) -> None:
    args = ["run", "--inputs", str(images), "--limit", "6", "--batch-size", "3", "--workers", "2", "--repeats", "1",
            "--pipeline", "light", "--loaders", "sequential,thread", "--results", str(tmp_path)]  # fmt: skip
    res = CliRunner().invoke(app, [*args, "--cache", "cold"], env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    assert "page cache: " in res.stderr
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert data["options"]["cache"] == "cold"
    assert all(p["cache"] == "cold" for p in data["points"])
    fs = filesystem(images)
    if fs is not None and fs[0] not in ("tmpfs", "ramfs") and data["points"][0]["cache_resident"] is not None:
        assert "page cache: cold" in res.stderr and data["points"][0]["cache_resident"] <= 0.5


def test_warm_is_the_default_and_a_bad_value_is_refused(images: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["run", "--inputs", str(images), "--cache", "tepid", "--results", str(tmp_path)])
    assert res.exit_code == 2 and "'tepid' is not one of 'warm', 'cold'" in res.stderr
    args = ["run", "--inputs", str(images), "--limit", "4", "--batch-size", "2", "--workers", "1", "--repeats", "1",
            "--pipeline", "light", "--loaders", "sequential,thread", "--results", str(tmp_path), "--quiet"]  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert data["options"]["cache"] == "warm"
    assert all(p["cache"] == "warm" and p["cache_resident"] is None for p in data["points"])


def test_info_shows_the_filesystem_of_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["info"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    fs = filesystem(tmp_path)
    assert "inputs/ filesystem" in res.stdout
    if fs is not None:
        assert f"{fs[0]} on {fs[1]}" in res.stdout


def test_measure_evicts_before_the_warm_up_and_every_timed_epoch(monkeypatch: pytest.MonkeyPatch, images: Path) -> None:
    import pdl.bench.timing as measure_mod
    import pdl.data.cache
    from pdl import load_pipeline
    from pdl.bench.timing import Workload, measure
    from pdl.loaders import LoaderSpec

    from ..bench.test_measure import FakeClock, FakeLoader

    clock, log = FakeClock(), []
    script = {"sequential": [1.0, 2.0, 2.0], "thread": [1.0, 1.0, 1.0]}
    monkeypatch.setattr(measure_mod, "make_loader", lambda kind, *a, **k: FakeLoader(kind, script[kind], clock, log))

    def evict(paths):
        log.append(f"evict {len(paths)}")
        return Eviction(len(paths), 0, 0.0)

    monkeypatch.setattr(pdl.data.cache, "evict", evict)
    ds = ImageFolder(images, limit=5)
    work = Workload(ds, load_pipeline("light"), LoaderSpec(batch_size=2), ("sequential", "thread"), 2, cache="cold")
    seq, thr = measure(work, clock=clock)
    warm_ups, round_1, round_2 = ["sequential", "thread"], ["sequential", "thread"], ["thread", "sequential"]
    assert log == [entry for kind in warm_ups + round_1 + round_2 for entry in ("evict 5", kind)]
    assert (seq.cache, seq.cache_resident, thr.cache, thr.cache_resident) == ("cold", 0.0, "cold", 0.0)
    log.clear()
    script = {"sequential": [1.0, 2.0], "thread": [1.0, 1.0]}
    warm = measure(Workload(ds, load_pipeline("light"), LoaderSpec(batch_size=2), ("sequential", "thread"), 1), clock=clock)
    assert not any(entry.startswith("evict") for entry in log) and warm[0].cache == "warm"
