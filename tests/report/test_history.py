"""`pdl report --history DIR`: runs ordered by time, each configuration's trend, the first significant change
marked; a folder that cannot be a history is one line and exit 2."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pdl.bench.files import ResultWriter, load_folder
from pdl.bench.records import Source
from pdl.cli import app
from pdl.machine.host import git_source
from pdl.report.history import history, order

from ..factories import sweep_workers


def _write(folder: Path, rs, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    writer = ResultWriter(folder, rs.kind)
    writer.save(rs)
    writer.path.rename(path)
    writer.csv_path.unlink()
    return path


def six_runs(folder: Path, slower_from: int = 3) -> None:
    """Six calibrated runs a day apart, written out of order; from run ``slower_from`` (0-based) every image
    costs 1.4× (the machine drifting ±5% meanwhile, which the calibration cancels)."""
    drift = [1.0, 1.05, 0.95, 1.03, 0.97, 1.0]
    for i in reversed(range(6)):
        cost = (1.4 if i >= slower_from else 1.0) * drift[i]
        rs = sweep_workers(rounds=5, jitter=0.02, calibration_s=0.01 * drift[i], cost=cost)
        rs = replace(rs, created=f"2026-11-0{i + 1}T10:00:00+0000", source=Source(f"{i}abcdef0123", "main", False))
        _write(folder, rs, f"run-{5 - i}.json")  # names in the reverse order of time


def test_runs_are_ordered_by_time_and_the_injected_regression_is_marked_at_its_run(tmp_path: Path) -> None:
    six_runs(tmp_path)
    h = history(order(load_folder(tmp_path), str(tmp_path)), 0.10)
    assert [r.results.source.commit[:1] for r in h.runs] == ["0", "1", "2", "3", "4", "5"] and h.corrected
    light2 = next(t for t in h.trends if t.key[:3] == ("light", "process", 2))
    assert [c.run for c in light2.changes] == [3]  # run 4, and only there: afterwards the trend is at the new level
    assert light2.changes[0].change == pytest.approx(1 / 1.4 - 1)
    assert light2.values[0] == pytest.approx(light2.values[2]) and light2.values[3] == pytest.approx(light2.values[0] / 1.4)
    assert all([c.run for c in t.changes] == [3] for t in h.trends)  # every loader, the sequential loops too
    assert len(h.trends) == 10


def test_the_history_table_and_plot_through_the_cli(tmp_path: Path) -> None:
    six_runs(tmp_path / "h")
    res = CliRunner().invoke(
        app, ["report", "--history", str(tmp_path / "h"), "--format", "markdown", "--plot", str(tmp_path / "t.png")]
    )
    assert res.exit_code == 0, res.output
    text = res.stdout
    assert text.startswith("**history · 6 runs · sweep-workers · images/s at the first run's machine speed")
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[2].startswith("| 1 | 2026-11-01T10:00 · 0abcdef (main) | 10 |")
    assert "▼ -29%" in lines[5] and "▼" not in "".join(lines[:5] + lines[6:])  # run 4 only
    assert "- light · process · 2 w · b8: significantly slower from run 4 (2026-11-04T10:00 · 3abcdef (main)): -29%, p = " in text
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_flat_history_says_so(tmp_path: Path) -> None:
    six_runs(tmp_path, slower_from=6)
    res = CliRunner().invoke(app, ["report", "--history", str(tmp_path), "--format", "markdown"])
    assert res.exit_code == 0 and "- no significant change in any configuration over these runs" in res.stdout


def _one_line(res, *parts: str) -> None:
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    [line] = res.stderr.strip().splitlines()
    for part in parts:
        assert part in line, line


def test_what_cannot_be_a_history_is_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    (tmp_path / "empty").mkdir()
    _one_line(
        runner.invoke(app, ["report", "--history", str(tmp_path / "empty")]),
        f"--history '{tmp_path / 'empty'}': no pdl results files",
    )
    _one_line(runner.invoke(app, ["report", "--history", str(tmp_path / "nope")]), "not a folder")
    mixed = tmp_path / "mixed"
    _write(mixed, sweep_workers(), "a.json")
    _write(mixed, replace(sweep_workers(), kind="sweep-batch"), "b.json")
    _one_line(
        runner.invoke(app, ["report", "--history", str(mixed)]),
        "different kinds cannot be compared",
        "sweep-workers: a.json",
        "sweep-batch: b.json",
    )
    newer = tmp_path / "newer"
    path = _write(newer, sweep_workers(), "a.json")
    path.write_text(json.dumps({**json.loads(path.read_text()), "version": 99}))
    _one_line(runner.invoke(app, ["report", "--history", str(newer)]), "a.json' has results schema version 99")
    _one_line(runner.invoke(app, ["report", "--history", str(mixed), str(path)]), "--history reads a whole folder")
    _one_line(runner.invoke(app, ["report", "--history", str(mixed), "--format", "csv"]), "--format 'csv' with --history")


def test_a_json_nested_100000_deep_is_not_a_results_file(tmp_path: Path) -> None:
    """A baseline can come from a pull request: whatever it holds, one line and exit 2."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    _one_line(CliRunner().invoke(app, ["report", str(deep)]), f"'{deep}' is not a pdl results file (JSON nested too deep")
    cur = _write(tmp_path / "c", sweep_workers(), "c.json")
    _one_line(CliRunner().invoke(app, ["report", str(cur), "--baseline", str(deep)]), "nested too deep")
    nested = tmp_path / "nested.json"
    doc = json.loads(cur.read_text())
    doc["system"]["cpu"] = json.loads("[" * 900 + "]" * 900)  # deep but readable JSON, in a typed field
    nested.write_text(json.dumps(doc))
    res = CliRunner().invoke(app, ["report", str(nested)])
    assert res.exit_code == 2 and "Traceback" not in res.output and str(nested) in res.stderr


def test_results_record_the_git_commit_and_branch(tmp_path: Path) -> None:
    assert git_source(str(tmp_path)) is None  # not a repository
    run = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*run, "init", "-q", "-b", "trunk"], check=True)
    (tmp_path / "f").write_text("1")
    subprocess.run([*run, "add", "f"], check=True)
    subprocess.run([*run, "commit", "-qm", "one"], check=True)
    head = subprocess.run([*run, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    assert git_source(str(tmp_path)) == {"commit": head, "branch": "trunk", "dirty": False}
    (tmp_path / "f").write_text("2")
    assert git_source(str(tmp_path))["dirty"] is True
