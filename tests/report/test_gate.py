"""The regression gate: verdicts from hand-made results, and its exit codes through the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pdl.bench.files import ResultWriter
from pdl.cli import app
from pdl.errors import ConfigError, ResultsError
from pdl.report.gate import Limits, compare, exit_code, judge, parse_threshold

from ..factories import MACHINE, point, results, sweep_workers

V1_SWEEP = Path(__file__).parents[1] / "fixtures" / "v1-sweep.json"


BASE5 = [2.0, 2.1, 1.9, 2.05, 1.95]
TEN = Limits(images=0.10, speedup=0.10)


def test_judge_needs_both_size_and_evidence() -> None:
    assert judge(BASE5, [1.95, 2.0, 2.05, 1.98, 2.02], 0.10)[::2] == ("ok", "within ±10%")
    status, change, reason = judge(BASE5, [1.2, 1.3, 1.25, 1.22, 1.28], 0.10)
    assert (status, round(change, 3)) == ("regressed", -0.375)
    assert reason == "-38%, p = 0.00397 (Mann–Whitney U, 5 + 5 rounds)"  # 1 / C(10, 5): every round below every one
    assert judge(BASE5, [2.6, 2.7, 2.5, 2.65, 2.55], 0.10)[0] == "improved"
    noisy = judge(BASE5, [1.5, 1.6, 2.2, 1.55, 1.58], 0.10)
    assert (
        noisy[0] == "inconclusive"
        and noisy[2] == "rounds overlap, p = 0.0754 (Mann–Whitney U, 5 + 5 rounds): re-run with more --repeats"
    )
    few = judge([2.0, 2.1, 1.9], [1.0, 1.1, 1.05], 0.10)
    assert few[::2] == ("inconclusive", "too few rounds to tell (need 5 on each side for p ≤ 0.01; got 3 and 3)")


def test_compare_matches_points_by_configuration() -> None:
    base, cur = sweep_workers(rounds=5, jitter=0.02), sweep_workers(rounds=5, jitter=0.02)
    slower = point("process", 1, list(base.points[0].baseline_wall_s), [16.0, 15.0, 17.0, 15.5, 16.5], pipeline="light")
    new = point("process", 16, list(base.points[0].baseline_wall_s), [1.0] * 5, pipeline="light")
    cur = replace(cur, points=(slower, *cur.points[1:-1], new))  # heavy, 8 workers not measured
    gate = compare(cur, base, TEN)
    verdicts = {(*v.key[:3], v.measure): v for v in gate.verdicts}
    assert verdicts[("light", "process", 1, "speedup")].status == "regressed"
    assert verdicts[("light", "process", 1, "speedup")].change == pytest.approx(0.5 - 1, abs=0.02)
    assert verdicts[("light", "process", 1, "images/s")].status == "regressed"
    assert verdicts[("heavy", "process", 8, "speedup")].status == "missing"
    assert verdicts[("light", "process", 16, "speedup")].status == "new"
    assert verdicts[("light", "process", 2, "speedup")].status == "ok"
    assert verdicts[("light", "sequential", 0, "images/s")].status == "ok"  # from the baseline rounds the points carry
    assert gate.exit_code == 1


def test_a_per_image_cost_regression_is_caught_by_throughput_though_speedups_hold() -> None:
    base = sweep_workers(rounds=5, jitter=0.02, calibration_s=0.01)
    cur = sweep_workers(rounds=5, jitter=0.02, calibration_s=0.01, cost=1.5)  # every loader 1.5× slower per image
    gate = compare(cur, base, TEN)
    assert {v.status for v in gate.verdicts if v.measure == "speedup"} == {"ok"}
    rates = [v for v in gate.verdicts if v.measure == "images/s"]
    assert len(rates) == 10 and {v.status for v in rates} == {"regressed"}  # 8 points and both sequential loops
    assert all(v.change == pytest.approx(1 / 1.5 - 1) for v in rates) and gate.exit_code == 1
    assert gate.notes == (
        "images/s change: drift-corrected (images/s × the calibration workload's median seconds in the same run)",
    )


def test_machine_drift_is_cancelled_by_the_calibration_rounds() -> None:
    base = sweep_workers(rounds=5, jitter=0.02, calibration_s=0.01)
    drifted = sweep_workers(rounds=5, jitter=0.02, calibration_s=0.013, cost=1.3)  # the machine 30% slower: all of it
    assert {v.status for v in compare(drifted, base, TEN).verdicts} == {"ok"}
    odd = replace(drifted, points=tuple(replace(p, calibration_s=(0.013, 0.013, 0.05, 0.013, 0.013)) for p in drifted.points))
    assert {v.status for v in compare(odd, base, TEN).verdicts} == {"ok"}  # one odd calibration: the run's median holds
    raw = compare(sweep_workers(rounds=5, jitter=0.02, cost=1.3), sweep_workers(rounds=5, jitter=0.02), TEN)
    assert {v.status for v in raw.verdicts if v.measure == "images/s"} == {"regressed"}  # uncalibrated: it cannot tell
    assert raw.notes == (
        "images/s change: raw, machine drift NOT cancelled (a file without calibration rounds, from an older pdl)",
    )


def test_a_change_that_only_the_calibration_makes_is_inconclusive_not_a_regression() -> None:
    # the quiet A/A of issue #31: the baseline's calibration median read 92 ms against 75 ms in every later run, so
    # raw images/s +10% became a drift-corrected -12% "regression" with p = 0.004
    base = sweep_workers(rounds=5, jitter=0.02, calibration_s=0.095)
    faster = sweep_workers(rounds=5, jitter=0.02, calibration_s=0.075, cost=1 / 1.1)  # raw images/s +10%, every loader
    rates = [v for v in compare(faster, base, TEN).verdicts if v.measure == "images/s"]
    assert {v.status for v in rates} == {"inconclusive"}
    assert rates[0].reason.startswith(
        "drift-corrected -13% but raw images/s +10%: the calibration workload's median moved (95 → 75 ms)"
    )
    # drift that hides a real change: raw about the same, the calibration 20% faster: the regression stands
    hidden = sweep_workers(rounds=5, jitter=0.02, calibration_s=0.08, cost=1.02)
    assert {v.status for v in compare(hidden, replace(base, points=tuple(replace(p, calibration_s=(0.1,) * 5) for p in base.points)), TEN).verdicts if v.measure == "images/s"} == {"regressed"}  # fmt: skip


def test_a_disturbed_baseline_is_no_speedup_verdict() -> None:
    base = sweep_workers(rounds=5, jitter=0.02)
    disturbed = replace(base.points[1], disturbed=True)
    cur = replace(base, points=(base.points[0], disturbed, *base.points[2:]))
    v = next(v for v in compare(cur, base, TEN).verdicts if v.key[:3] == ("light", "process", 2) and v.measure == "speedup")
    assert v.status == "inconclusive" and v.reason.startswith("disturbed baseline in the current results")


def test_exit_codes() -> None:
    same = compare(sweep_workers(rounds=5, jitter=0.02), sweep_workers(rounds=5, jitter=0.02), TEN).verdicts
    assert {v.status for v in same} == {"ok"} and exit_code(list(same)) == 0
    faster = compare(sweep_workers(factor=1.5, rounds=5, jitter=0.02), sweep_workers(rounds=5, jitter=0.02), TEN)
    assert {v.status for v in faster.verdicts if v.key[1] != "sequential"} == {"improved"}
    assert faster.exit_code == 0
    fewer = compare(sweep_workers(factor=0.5), sweep_workers(), TEN)  # 3 rounds: too few for evidence
    assert fewer.exit_code == 3


def test_a_baseline_from_another_machine_is_refused_unless_allowed() -> None:
    other = replace(sweep_workers(), machine=replace(MACHINE, cpu=replace(MACHINE.cpu, usable=16)))
    with pytest.raises(ResultsError, match="another machine.*--allow-other-machine"):
        compare(sweep_workers(), other, TEN)
    allowed = compare(sweep_workers(), other, TEN, allow_other_machine=True)
    assert allowed.exit_code == 0 and {v.measure for v in allowed.verdicts} == {"speedup"}
    assert allowed.notes == ("another machine: images/s not compared (it depends on the machine); speedups only",)


def test_threshold_parsing() -> None:
    assert parse_threshold("--max-slowdown", "10%") == pytest.approx(0.10) and parse_threshold("--x", "0.25") == 0.25
    with pytest.raises(ConfigError, match="--max-speedup-drop 'lots': give a percentage"):
        parse_threshold("--max-speedup-drop", "lots")


def _save(folder: Path, rs) -> Path:
    writer = ResultWriter(folder, rs.kind)
    writer.save(rs)
    return writer.path


@pytest.mark.parametrize(("factor", "code", "word"), [(1.0, 0, "ok"), (0.5, 1, "REGRESSED"), (1.5, 0, "improved")])
def test_gate_exit_codes_through_the_cli(tmp_path: Path, factor: float, code: int, word: str, monkeypatch) -> None:
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    base = _save(tmp_path / "b", sweep_workers(rounds=5, jitter=0.02))
    cur = _save(tmp_path / "c", sweep_workers(factor=factor, rounds=5, jitter=0.02))
    res = CliRunner().invoke(app, ["report", str(cur), "--baseline", str(base), "--format", "markdown"])
    assert res.exit_code == code, res.output
    assert res.stdout.startswith(
        "**regression gate (max slowdown 10% in images/s, 25% in speedup) · Test CPU 3000 · 4 usable of 4 logical cores"
    )
    assert f"| {word} |" in res.stdout


def test_the_gate_table_is_appended_to_the_github_step_summary(tmp_path: Path, monkeypatch) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    base = _save(tmp_path / "b", sweep_workers(rounds=5, jitter=0.02))
    cur = _save(tmp_path / "c", sweep_workers(factor=0.5, rounds=5, jitter=0.02))
    res = CliRunner().invoke(app, ["report", str(cur), "--baseline", str(base)])
    assert res.exit_code == 1, res.output
    text = summary.read_text()
    assert text.startswith("earlier step\n**regression gate (max slowdown 10% in images/s, 25% in speedup)")
    assert "| light | process | 2 | 8 | speedup | 1.90× | 0.95× | -50.0% | REGRESSED |" in text


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
    base = _save(tmp_path / "b", sweep_workers(rounds=5))
    cur = _save(tmp_path / "c", sweep_workers(factor=0.5, rounds=5))
    res = CliRunner().invoke(app, ["report", str(cur), "--baseline", str(base), "--format", "json"])
    assert res.exit_code == 1, res.output
    data = json.loads(res.stdout)
    assert data["machine"] == "Test CPU 3000 · 4 usable of 4 logical cores · testbox"
    row = next(r for r in data["verdicts"] if (r["pipeline"], r["workers"], r["measure"]) == ("light", 2, "speedup"))
    assert row == {
        "pipeline": "light", "loader": "process", "workers": 2, "batch_size": 8, "augment_in": "workers",
        "measure": "speedup", "status": "regressed", "baseline": pytest.approx(1.9), "current": pytest.approx(0.95),
        "change": pytest.approx(-0.5), "reason": "-50%, p = 0.00199 (Mann–Whitney U, 5 + 5 rounds)",
    }  # fmt: skip


def test_a_version_1_baseline_still_gates_a_new_file(tmp_path: Path) -> None:
    from pdl.bench.files import load

    old = load(V1_SWEEP)  # the same configurations, measured now on "another machine" with the same speedups
    cur = _save(tmp_path, results("sweep-workers", [replace(p, start_method="fork") for p in old.points]))
    args = ["report", str(cur), "--baseline", str(V1_SWEEP), "--format", "markdown"]
    refused = CliRunner().invoke(app, args)
    assert refused.exit_code == 2 and "another machine (AMD EPYC, 2 usable cores" in refused.stderr
    res = CliRunner().invoke(app, [*args, "--allow-other-machine"])
    assert res.exit_code == 0, res.output
    assert res.stdout.count("| ok |") == 4  # light, heavy × 1, 2 workers: their speedups
    assert res.stdout.endswith("- 4 ok\n- another machine: images/s not compared (it depends on the machine); speedups only\n")


def test_a_file_from_a_newer_pdl_is_refused_in_one_line(tmp_path: Path) -> None:
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({**json.loads(V1_SWEEP.read_text()), "version": 99}))
    for args in (["report", str(newer)], ["report", str(_save(tmp_path, sweep_workers())), "--baseline", str(newer)]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2 and "Traceback" not in res.output
        [line] = res.stderr.strip().splitlines()
        assert "has results schema version 99, from a newer pdl; this pdl reads versions 1 to 5: upgrade pdl" in line


def test_paths_are_printed_verbatim_not_as_markup(tmp_path: Path) -> None:
    path = _save(tmp_path / "[bold]results", sweep_workers())
    out = tmp_path / "[red]gate.md"
    res = CliRunner().invoke(app, ["report", str(path), "--format", "markdown", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stderr.strip() == f"wrote {out}" and out.read_text().startswith("**speedup over sequential")


def test_a_change_of_augmentation_library_or_opencv_is_named_beside_the_verdicts() -> None:
    base = sweep_workers(rounds=5, jitter=0.02, calibration_s=0.01)
    versions = {**MACHINE.versions, "albumentations": "2.5.1", "albumentations_dist": "albumentationsx", "opencv": "5.1.0"}
    old = replace(base, machine=replace(MACHINE, versions={**MACHINE.versions, "albumentations_dist": "albumentations"}))
    cur = replace(sweep_workers(rounds=5, jitter=0.02, calibration_s=0.01, cost=1.6), machine=replace(MACHINE, versions=versions))
    gate = compare(cur, old)
    assert gate.exit_code == 1
    assert gate.notes[:3] == (
        "augmentation library changed: albumentations in the baseline, albumentationsx now: the likely cause of a change in images/s",
        "albumentations changed: 2.0.8 in the baseline, 2.5.1 now: the likely cause of a change in images/s",
        "opencv changed: 5.0.0 in the baseline, 5.1.0 now: the likely cause of a change in images/s",
    )
    assert compare(base, base).notes[:1] == (
        "images/s change: drift-corrected (images/s × the calibration workload's median seconds in the same run)",
    )
