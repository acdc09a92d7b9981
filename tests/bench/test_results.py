"""Results files: versioned JSON + tidy CSV, atomic saves, never overwritten, damaged files refused."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pdl.bench.files import ResultWriter, load, newest
from pdl.bench.point import Cluster
from pdl.bench.records import VERSION
from pdl.cli import app
from pdl.errors import ResultsError

from ..factories import point, results, sweep_workers

DATA = Path(__file__).parents[1] / "fixtures"


def test_save_then_load_round_trips_and_csv_is_tidy(tmp_path: Path) -> None:
    rs = sweep_workers()
    writer = ResultWriter(tmp_path, rs.kind)
    writer.save(rs)
    assert writer.path.name.endswith("-sweep-workers.json")
    back = load(writer.path)
    assert back == rs and back.version == VERSION
    rows = list(csv.DictReader(writer.csv_path.open()))
    assert len(rows) == len(rs.points) * 3  # one row per point and round
    assert rows[0]["pipeline"] == "light" and rows[0]["round"] == "1" and rows[0]["usable_cores"] == "4"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_an_interrupt_while_the_csv_is_written_keeps_the_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C between the JSON's rename and the CSV's: the JSON, with its points, is what a stopped run keeps
    (it used to count as never saved, and the stopped sweep deleted it)."""
    import pdl.bench.files as files_mod

    real, calls = files_mod._atomic_write, []

    def interrupted_at_the_csv(path: Path, text: str) -> None:
        calls.append(path.suffix)
        if path.suffix == ".csv":
            raise KeyboardInterrupt
        real(path, text)

    monkeypatch.setattr(files_mod, "_atomic_write", interrupted_at_the_csv)
    writer = ResultWriter(tmp_path, "sweep-workers")
    with pytest.raises(KeyboardInterrupt):
        writer.save(sweep_workers())
    assert calls == [".json", ".csv"] and writer.saved
    writer.discard_if_unused()
    assert len(load(writer.path).points) == len(sweep_workers().points)


def test_a_new_writer_never_takes_an_existing_name(tmp_path: Path) -> None:
    a, b = ResultWriter(tmp_path, "run"), ResultWriter(tmp_path, "run")
    assert a.path != b.path and a.path.exists() and b.path.exists()
    b.discard_if_unused()
    assert not b.path.exists() and a.path.exists()


def test_resaving_replaces_the_claimed_file_atomically(tmp_path: Path) -> None:
    rs = sweep_workers()
    writer = ResultWriter(tmp_path, rs.kind)
    writer.save(replace(rs, points=rs.points[:1]))
    assert len(load(writer.path).points) == 1
    writer.save(rs)
    assert len(load(writer.path).points) == 8


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is damaged or not JSON"),
        ('{"hello": 1}', "is not a pdl results file"),
        (
            '{"schema": "pdl.results", "version": 99}',
            "has results schema version 99, from a newer pdl; this pdl reads versions 1 to 5: upgrade pdl",
        ),
        ('{"schema": "pdl.results", "version": "2"}', "is damaged (version '2' is not a schema version)"),
        ('{"schema": "pdl.results", "version": 1, "kind": "run"}', "is damaged (missing or wrong field: options)"),
        ('{"schema": "pdl.results", "version": 2, "kind": "run"}', "is damaged (missing or wrong field: options)"),
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
    assert data["version"] == VERSION and data["points"][0]["memory_peak_mb"] is None  # every field written, null if not measured


def test_optional_fields_round_trip(tmp_path: Path) -> None:
    ray = point("ray", 2, [2.0], [1.0], cluster=Cluster("local", 1, 2.0, 512.0, 0.5), start_method=None)
    mem = point("process", 2, [2.0], [1.0], memory_peak_mb=(100.0, 101.5), batch_mb=0.9, skipped=(("a.jpg", "empty"),))
    rs = results("run", [ray, mem])
    writer = ResultWriter(tmp_path, rs.kind)
    writer.save(rs)
    assert load(writer.path) == rs


def _damaged_point(tmp_path: Path, drop: str = "", **changes: object) -> str:
    data = json.loads(json.dumps(results("run", [point("process", 2, [2.0, 2.0], [1.0, 1.0])]).to_dict()))
    data["points"][0].update(changes)
    data["points"][0].pop(drop, None)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsError) as info:
        load(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_damaged_point_is_refused_naming_the_field(tmp_path: Path) -> None:
    assert "wrong field: points[0].wall_s: expected a list, got 'slow'" in _damaged_point(tmp_path, wall_s="slow")
    assert "wrong field: points[0].workers: expected int, got 2.5" in _damaged_point(tmp_path, workers=2.5)
    assert "one value per round" in _damaged_point(tmp_path, wall_s=[1.0])
    assert "wrong field: points[0].speedup: expected float, got None)" in _damaged_point(tmp_path, speedup=None)
    assert "wrong field: points[0].images: expected int, got None)" in _damaged_point(tmp_path, images=None)
    assert "wrong field: points[0].stages_s)" in _damaged_point(tmp_path, drop="stages_s")


def test_a_version_1_run_file_loads_migrated(tmp_path: Path) -> None:
    rs = load(DATA / "v1-run.json")
    assert rs.version == VERSION and rs.kind == "run" and [p.loader for p in rs.points] == ["sequential", "process", "thread"]
    seq, par, thread = rs.points
    assert par.start_method == "fork" and seq.start_method is None and thread.cluster is None
    assert len(par.memory_peak_mb or ()) == 5 and par.batch_mb == pytest.approx(8 * 200 * 200 * 3 / 2**20)
    assert len(par.wall_s) == 2 and rs.machine.cpu.usable >= 1
    raw = json.loads((DATA / "v1-run.json").read_text())["points"][1]
    assert par.speedup == raw["speedup"] and list(par.wall_s) == raw["wall_s"]  # what was measured, as it was
    assert not hasattr(par, "measured_s")


def test_a_version_1_sweep_loads_and_resaves_as_the_current_version(tmp_path: Path) -> None:
    rs = load(DATA / "v1-sweep.json")
    assert rs.kind == "sweep-workers" and len(rs.points) == 4 and rs.machine.cpu.model == "AMD EPYC"
    writer = ResultWriter(tmp_path, rs.kind)
    writer.save(rs)
    again = load(writer.path)
    assert again == rs and json.loads(writer.path.read_text())["version"] == VERSION


def test_a_version_2_tune_file_loads_with_its_outcome_typed() -> None:
    raw = json.loads((DATA / "v2-tune.json").read_text())
    assert raw["version"] == 2 and "tune" in raw["options"]  # as pdl 0.x wrote it: a dict inside options
    rs = load(DATA / "v2-tune.json")
    assert rs.version == VERSION and "tune" not in rs.options and rs.options["target_stall"] == 0.05
    assert rs.tuned is not None and rs.tuned.workers == 1 and rs.tuned.prefetch == 2 and rs.tuned.trials == 3
    assert rs.tuned.call == "ParallelLoader(ds, pipe, batch_size=4, num_workers=1, prefetch=2)"
    assert rs.tuned.reached is False and rs.tuned.stall == raw["options"]["tune"]["stall"]


def test_a_version_2_decode_file_loads_with_its_outcome_typed() -> None:
    rs = load(DATA / "v2-decode.json")
    assert rs.version == VERSION and "decode" not in rs.options
    [d] = rs.decoded
    assert (d.pipeline, d.loader, d.need, d.reduced, d.full, d.jpegs) == ("light", "process", (256, 256), 4, 20, 24)
    assert d.scales == {"2": 4, "4": 0, "8": 0} and d.why_none is None and d.output_dtype == "uint8"


@pytest.mark.parametrize("name", ["v2-tune.json", "v2-decode.json"])
def test_report_shows_a_version_2_tune_or_decode_file_as_it_did(name: str) -> None:
    res = CliRunner().invoke(app, ["report", str(DATA / name)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    if name == "v2-tune.json":
        assert "use: ParallelLoader(ds, pipe, batch_size=4, num_workers=1, prefetch=2)" in res.stdout
        assert "stopped: 2 workers did not lower the stall measurably below 1's" in res.stdout
    else:
        assert "4 (1/2: 4)" in res.stdout and "1.17" in res.stdout  # reduced images by scale, the MAD


def test_a_damaged_typed_outcome_is_named(tmp_path: Path) -> None:
    raw = json.loads((DATA / "v2-tune.json").read_text())
    raw["options"]["tune"]["workers"] = "two"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ResultsError, match=r"wrong field: tuned\.workers: expected int, got 'two'"):
        load(path)


def test_report_shows_a_version_1_run_file() -> None:
    res = CliRunner().invoke(app, ["report", str(DATA / "v1-run.json"), "--stages"], env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    assert "median wall s" in res.stdout and "│ thread" in res.stdout and "where the time goes" in res.stdout
    assert "peak memory, MB" in res.stdout


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_results_files_get_the_users_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        writer = ResultWriter(tmp_path, "run")
        writer.save(sweep_workers())
    finally:
        os.umask(old)
    for path in (writer.path, writer.csv_path):
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


def test_a_version_3_run_file_loads_with_nothing_seen_in_its_rounds() -> None:
    from pdl.bench.files import load

    path = Path(__file__).parents[1] / "fixtures" / "v3-run.json"
    assert json.loads(path.read_text())["version"] == 3
    rs = load(path)
    assert rs.version == VERSION == 5 and [p.loader for p in rs.points] == ["sequential", "process"]
    for p in rs.points:  # never checked: every round counts as quiet, none was redone
        assert p.interference == () and p.redone == 0 and p.quiet() == (True,) * p.rounds and p.busy_rounds() == ()


def test_a_version_4_run_file_loads_and_reads_its_ceiling_share_as_a_ratio_of_medians() -> None:
    from pdl.bench.files import load

    path = Path(__file__).parents[1] / "fixtures" / "v4-run.json"
    assert json.loads(path.read_text())["version"] == 4
    rs = load(path)
    seq, process = rs.points
    assert rs.version == VERSION == 5 and (seq.loader, process.loader) == ("sequential", "process")
    assert process.ceiling_copies is None and len(process.ceiling_rounds) == process.rounds == 5  # as measured
    assert process.of_ceiling == pytest.approx(process.speedup / process.ceiling)
    assert process.noisy  # its rounds disagreed by more than 10%: kept as measured
