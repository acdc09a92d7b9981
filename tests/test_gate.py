"""The regression gate: verdicts from hand-made results, and its exit codes through the CLI."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pdl.cli import app
from pdl.errors import ConfigError, ResultsError
from pdl.gate import compare, exit_code, judge, parse_threshold
from pdl.results import ResultWriter

from .factories import point, sweep_workers


def test_judge_needs_both_size_and_evidence() -> None:
    assert judge([2.0, 2.1, 1.9], [1.95, 2.0, 2.05], 0.10) == ("ok", "within ±10%")
    assert judge([2.0, 2.1, 1.9], [1.2, 1.3, 1.25], 0.10)[0] == "regressed"
    assert judge([2.0, 2.1, 1.9], [2.6, 2.7, 2.5], 0.10)[0] == "improved"
    noisy = judge([2.0, 2.1, 1.9], [1.5, 1.6, 2.0], 0.10)
    assert noisy == ("inconclusive", "rounds overlap: too noisy to tell; re-run with more --repeats")
    assert judge([2.0], [1.0], 0.10) == ("inconclusive", "too few rounds to tell (need 3 on each side)")


def test_compare_matches_points_by_configuration() -> None:
    base, cur = sweep_workers(), sweep_workers()
    cur.points[0] = point("process", 1, [8.0] * 3, [16.0, 15.0, 17.0], pipeline="light")  # 1.0× → 0.5×
    del cur.points[-1]  # heavy, 8 workers not measured
    cur.points.append(point("process", 16, [8.0] * 3, [1.0] * 3, pipeline="light"))
    verdicts = {v.key[:3]: v for v in compare(cur, base, 0.10)}
    assert verdicts[("light", "process", 1)].status == "regressed"
    assert verdicts[("light", "process", 1)].change == pytest.approx(0.5 - 1)
    assert verdicts[("heavy", "process", 8)].status == "missing"
    assert verdicts[("light", "process", 16)].status == "new"
    assert verdicts[("light", "process", 2)].status == "ok"
    assert exit_code(list(verdicts.values())) == 1


def test_exit_codes() -> None:
    same = compare(sweep_workers(), sweep_workers(), 0.10)
    assert {v.status for v in same} == {"ok"} and exit_code(same) == 0
    faster = compare(sweep_workers(factor=1.5), sweep_workers(), 0.10)
    assert {v.status for v in faster} == {"improved"} and exit_code(faster) == 0
    fewer = sweep_workers()
    for p in fewer.points:
        p["speedup_rounds"] = p["speedup_rounds"][:1]
    assert exit_code(compare(sweep_workers(factor=0.5), fewer, 0.10)) == 3


def test_a_baseline_from_another_machine_is_refused_unless_allowed() -> None:
    other = sweep_workers()
    other.system = copy.deepcopy(other.system)
    other.system["cpu"]["usable"] = 16
    with pytest.raises(ResultsError, match="another machine.*--allow-other-machine"):
        compare(sweep_workers(), other, 0.10)
    assert exit_code(compare(sweep_workers(), other, 0.10, allow_other_machine=True)) == 0


def test_threshold_parsing() -> None:
    assert parse_threshold("10%") == pytest.approx(0.10) and parse_threshold("0.25") == 0.25
    with pytest.raises(ConfigError, match="--max-slowdown 'lots'"):
        parse_threshold("lots")


def _save(folder: Path, rs) -> Path:
    writer = ResultWriter(folder, rs.kind)
    writer.save(rs)
    return writer.path


@pytest.mark.parametrize(("factor", "code", "word"), [(1.0, 0, "ok"), (0.5, 1, "REGRESSED"), (1.5, 0, "improved")])
def test_gate_exit_codes_through_the_cli(tmp_path: Path, factor: float, code: int, word: str) -> None:
    base = _save(tmp_path / "b", sweep_workers())
    cur = _save(tmp_path / "c", sweep_workers(factor=factor))
    res = CliRunner().invoke(app, ["report", str(cur), "--baseline", str(base), "--format", "markdown"])
    assert res.exit_code == code, res.output
    assert res.stdout.startswith("**regression gate (max slowdown 25%) · Test CPU 3000 · 4 usable of 4 logical cores")
    assert f"| {word} |" in res.stdout


def test_report_formats_and_errors(tmp_path: Path) -> None:
    path = _save(tmp_path, sweep_workers())
    runner = CliRunner()
    csv = runner.invoke(app, ["report", str(path), "--format", "csv", "--output", str(tmp_path / "o.csv")])
    assert csv.exit_code == 0 and (tmp_path / "o.csv").read_text().startswith("kind,pipeline,loader")
    js = runner.invoke(app, ["report", str(path), "--format", "json"])
    assert js.exit_code == 0 and '"schema": "pdl.results"' in js.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    res = runner.invoke(app, ["report", str(bad)])
    assert res.exit_code == 2 and "is damaged or not JSON" in res.stderr and "Traceback" not in res.output
    res = runner.invoke(app, ["report", str(path), "--format", "xml"])
    assert res.exit_code == 2 and "--format 'xml': choose one of table, markdown, csv, json" in res.stderr


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = _save(tmp_path, sweep_workers())
    res = CliRunner().invoke(app, ["report", str(path), "--plot", str(tmp_path / "s.png")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
