"""The regression gate: verdicts from hand-made results, and its exit codes through the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pdl.cli import app
from pdl.errors import ConfigError, ResultsError
from pdl.gate import compare, exit_code, judge, parse_threshold
from pdl.results import ResultWriter

from .factories import MACHINE, point, results, sweep_workers

V1_SWEEP = Path(__file__).parent / "data" / "v1-sweep.json"


def test_judge_needs_both_size_and_evidence() -> None:
    assert judge([2.0, 2.1, 1.9], [1.95, 2.0, 2.05], 0.10) == ("ok", "within ±10%")
    assert judge([2.0, 2.1, 1.9], [1.2, 1.3, 1.25], 0.10)[0] == "regressed"
    assert judge([2.0, 2.1, 1.9], [2.6, 2.7, 2.5], 0.10)[0] == "improved"
    noisy = judge([2.0, 2.1, 1.9], [1.5, 1.6, 2.0], 0.10)
    assert noisy == ("inconclusive", "rounds overlap: too noisy to tell; re-run with more --repeats")
    assert judge([2.0], [1.0], 0.10) == ("inconclusive", "too few rounds to tell (need 3 on each side)")


def test_compare_matches_points_by_configuration() -> None:
    base, cur = sweep_workers(), sweep_workers()
    slower = point("process", 1, [8.0] * 3, [16.0, 15.0, 17.0], pipeline="light")  # 1.0× → 0.5×
    new = point("process", 16, [8.0] * 3, [1.0] * 3, pipeline="light")
    cur = replace(cur, points=(slower, *cur.points[1:-1], new))  # heavy, 8 workers not measured
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
    fewer = replace(fewer, points=tuple(point(p.loader, p.workers, [8.0], list(p.wall_s[:1]), p.pipeline) for p in fewer.points))
    assert exit_code(compare(sweep_workers(factor=0.5), fewer, 0.10)) == 3


def test_a_baseline_from_another_machine_is_refused_unless_allowed() -> None:
    other = replace(sweep_workers(), machine=replace(MACHINE, cpu=replace(MACHINE.cpu, usable=16)))
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


def test_gate_json_export_comes_from_the_verdicts(tmp_path: Path) -> None:
    base = _save(tmp_path / "b", sweep_workers())
    cur = _save(tmp_path / "c", sweep_workers(factor=0.5))
    res = CliRunner().invoke(app, ["report", str(cur), "--baseline", str(base), "--format", "json"])
    assert res.exit_code == 1, res.output
    data = json.loads(res.stdout)
    assert data["machine"] == "Test CPU 3000 · 4 usable of 4 logical cores · testbox"
    row = next(r for r in data["verdicts"] if (r["pipeline"], r["workers"]) == ("light", 2))
    assert row == {
        "pipeline": "light", "loader": "process", "workers": 2, "batch_size": 8, "augment_in": "workers",
        "status": "regressed", "baseline": pytest.approx(1.9), "current": pytest.approx(0.95),
        "change": pytest.approx(-0.5), "reason": "-50%, rounds do not overlap",
    }  # fmt: skip


def test_a_version_1_baseline_still_gates_a_new_file(tmp_path: Path) -> None:
    from pdl.results import load

    old = load(V1_SWEEP)  # the same configurations, measured now on "another machine" with the same speedups
    cur = _save(tmp_path, results("sweep-workers", [replace(p, start_method="fork") for p in old.points]))
    args = ["report", str(cur), "--baseline", str(V1_SWEEP), "--format", "markdown"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "another machine (AMD EPYC, 2 usable cores" in refused.stderr
    res = CliRunner().invoke(app, [*args, "--allow-other-machine"])
    assert res.exit_code == 0, res.output
    assert res.stdout.count("| ok |") == 4 and res.stdout.endswith("- 4 ok\n")  # light, heavy × 1, 2 workers


def test_a_file_from_a_newer_pdl_is_refused_in_one_line(tmp_path: Path) -> None:
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**json.loads(V1_SWEEP.read_text()), "version": 99}))
    for args in (["report", str(newer)], ["report", str(_save(tmp_path, sweep_workers())), "--baseline", str(newer)]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2 and "Traceback" not in res.output
        [line] = res.stderr.strip().splitlines()
        assert "has results schema version 99, from a newer pdl; this pdl reads versions 1 to 2: upgrade pdl" in line


def test_paths_are_printed_verbatim_not_as_markup(tmp_path: Path) -> None:
    path = _save(tmp_path / "[bold]results", sweep_workers())
    out = tmp_path / "[red]gate.md"
    res = CliRunner().invoke(app, ["report", str(path), "--format", "markdown", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stderr.strip() == f"wrote {out}" and out.read_text().startswith("**speedup over sequential")
