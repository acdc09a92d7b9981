"""Saving never loses a measurement: a results folder that cannot take the file (full, gone) sends the results to
a temporary folder that is named, and the command exits 5; nothing is half-written anywhere."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pdl.bench.files import ResultWriter, load
from pdl.cli import app
from pdl.errors import ResultsError

from ..factories import sweep_workers


def test_a_folder_gone_between_saves_moves_the_results_to_a_named_temporary_folder(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path / "res", "sweep-workers")
    rs = sweep_workers()
    writer.save(rs)
    shutil.rmtree(tmp_path / "res")  # a cleaner on the runner, a remount
    writer.save(rs)
    assert writer.moved is not None and writer.moved.startswith(f"--results '{tmp_path / 'res'}' could not take them (")
    assert writer.path.parent != tmp_path / "res" and writer.path.parent.name.startswith("pdl-results-")
    assert load(writer.path) == rs and writer.csv_path.exists()
    line = writer.not_saved() or ""
    assert f"they are saved in {writer.path} (and .csv) instead; `pdl report {writer.path}` reads them" in line
    shutil.rmtree(writer.path.parent)


def test_when_the_temporary_folder_fails_too_it_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pdl.bench import files

    writer = ResultWriter(tmp_path / "res", "run")

    def full(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files, "_atomic_write", full)
    with pytest.raises(ResultsError, match=r"cannot save the results in '.*pdl-results-.*' either \(No space left on device\)"):
        writer.save(sweep_workers())
    assert list((tmp_path / "res").glob("*")) == []  # the empty name claimed there was given back
    shutil.rmtree(writer.path.parent)


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 64 KiB filesystem, filled up: the results folder of a CI runner whose disk is full."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here ({made.stderr.decode().strip()})")
    try:
        with open(mount / "filler", "wb") as fh:
            try:
                fh.write(b"\0" * (1 << 20))
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.timeout(120)
def test_a_full_disk_keeps_the_measurement_says_where_and_exits_5(images: Path, full_disk: Path) -> None:
    res = CliRunner().invoke(app, ["run", "--inputs", str(images), "--limit", "10", "--batch-size", "5", "--repeats", "1",
                                   "--results", str(full_disk / "res")], env={"COLUMNS": "160"})  # fmt: skip
    assert res.exit_code == 5, res.output
    assert "Traceback" not in res.output and "sequential" in res.stdout  # the tables were printed
    [line] = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert f"--results '{full_disk / 'res'}' could not take them (No space left on device; the results need " in line
    saved = Path(re.search(r"they are saved in (\S+\.json) \(and \.csv\)", line)[1])  # type: ignore[index]
    assert json.loads(saved.read_text())["complete"] is True
    shown = CliRunner().invoke(app, ["report", str(saved)], env={"COLUMNS": "160"})
    assert shown.exit_code == 0 and "process" in shown.stdout
    assert [p.name for p in (full_disk / "res").iterdir()] == []  # nothing half-written where it failed
    assert os.path.exists(saved.with_suffix(".csv"))
    shutil.rmtree(saved.parent)
