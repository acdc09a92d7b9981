"""Results files: versioned JSON + tidy CSV, atomic saves, never overwritten, damaged files refused."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pdl.errors import ResultsError
from pdl.results import ResultWriter, load, newest

from .factories import sweep_workers


def test_save_then_load_round_trips_and_csv_is_tidy(tmp_path: Path) -> None:
    rs = sweep_workers()
    writer = ResultWriter(tmp_path, rs.kind)
    writer.save(rs)
    assert writer.path.name.endswith("-sweep-workers.json")
    back = load(writer.path)
    assert back.points == rs.points and back.system == rs.system and back.version == 1
    rows = list(csv.DictReader(writer.csv_path.open()))
    assert len(rows) == len(rs.points) * 3  # one row per point and round
    assert rows[0]["pipeline"] == "light" and rows[0]["round"] == "1" and rows[0]["usable_cores"] == "4"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_a_new_writer_never_takes_an_existing_name(tmp_path: Path) -> None:
    a, b = ResultWriter(tmp_path, "run"), ResultWriter(tmp_path, "run")
    assert a.path != b.path and a.path.exists() and b.path.exists()
    b.discard_if_unused()
    assert not b.path.exists() and a.path.exists()


def test_resaving_replaces_the_claimed_file_atomically(tmp_path: Path) -> None:
    rs = sweep_workers()
    writer = ResultWriter(tmp_path, rs.kind)
    rs.points = rs.points[:1]
    writer.save(rs)
    assert len(load(writer.path).points) == 1
    rs.points = sweep_workers().points
    writer.save(rs)
    assert len(load(writer.path).points) == 8


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is damaged or not JSON"),
        ('{"hello": 1}', "is not a pdl results file"),
        ('{"schema": "pdl.results", "version": 99}', "has results schema version 99; this pdl reads version 1"),
        ('{"schema": "pdl.results", "version": 1, "kind": "run"}', "is damaged (missing or wrong field"),
    ],
)
def test_damaged_or_foreign_files_are_refused_in_one_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(ResultsError) as info:
        load(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="does not exist"):
        load(tmp_path / "nope.json")
    with pytest.raises(ResultsError, match="no results files in"):
        newest(tmp_path)


def test_json_holds_config_raw_timings_and_machine(tmp_path: Path) -> None:
    rs = sweep_workers()
    writer = ResultWriter(tmp_path, rs.kind)
    writer.save(rs)
    data = json.loads(writer.path.read_text())
    assert data["schema"] == "pdl.results" and data["kind"] == "sweep-workers"
    assert data["system"]["cpu"]["usable"] == 4 and data["points"][0]["wall_s"] == [8.0, 8.0, 8.0]
