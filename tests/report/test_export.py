"""Exporters against literal text: each format from the same Shown, no terminal involved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pdl.bench.files import ResultWriter
from pdl.cli import app
from pdl.report.export import EXPORTERS, FORMATS, Shown
from pdl.report.gate import Gate, Verdict
from pdl.report.render import grids

from ..factories import point, results, sweep_workers


def test_formats_are_the_terminal_table_then_the_exporters() -> None:
    assert FORMATS == ("table", "markdown", "csv", "json", "github-action-benchmark", "bmf")


def test_gate_json_is_the_verdicts_own_fields() -> None:
    v = Verdict(("light", "process", 2, 8, "workers"), "images/s", "regressed", 200.0, 150.0, -0.25, "-25%, p = 0.004")
    text = EXPORTERS["json"](Shown((sweep_workers(),), (), Gate((v,), ("a note",))))
    assert json.loads(text) == {
        "machine": "Test CPU 3000 · 4 usable of 4 logical cores · testbox",
        "verdicts": [
            {"pipeline": "light", "loader": "process", "workers": 2, "batch_size": 8, "augment_in": "workers",
             "measure": "images/s", "status": "regressed", "baseline": 200.0, "current": 150.0, "change": -0.25,
             "reason": "-25%, p = 0.004"}
        ],
        "notes": ["a note"],
    }  # fmt: skip


def _run_file():
    pts = [
        point("sequential", 0, [2.0, 2.5, 2.2], [2.0, 2.5, 2.2]),
        point("process", 2, [2.0, 2.5, 2.2], [1.0, 1.25, 1.0], augment_in="main"),
    ]
    return results("run", pts)


def test_github_action_benchmark_is_custom_bigger_is_better() -> None:
    """benchmark-action/github-action-benchmark, tool: customBiggerIsBetter: name, unit, value; range and extra optional."""
    data = json.loads(EXPORTERS["github-action-benchmark"](Shown((_run_file(),), ())))
    extra = "3 rounds; Test CPU 3000 · 4 usable of 4 logical cores · testbox"
    assert data == [
        {"name": "light · sequential · batch 8 · images/s", "unit": "images/s", "value": 36.36, "range": "32.0–40.0", "extra": extra},
        {"name": "light · process · 2 workers · batch 8 · augment in main · images/s", "unit": "images/s", "value": 80.0,
         "range": "64.0–80.0", "extra": extra},
        {"name": "light · process · 2 workers · batch 8 · augment in main · speedup", "unit": "×", "value": 2.0,
         "range": "2.000–2.200", "extra": extra},
    ]  # fmt: skip
    for row in data:
        assert set(row) <= {"name", "unit", "value", "range", "extra"} and isinstance(row["value"], float)


def test_bmf_is_bencher_metric_format() -> None:
    data = json.loads(EXPORTERS["bmf"](Shown((_run_file(),), ())))
    assert data == {
        "light · sequential · batch 8": {
            "throughput": {"value": pytest.approx(80 / 2.2), "lower_value": 32.0, "upper_value": 40.0},
        },
        "light · process · 2 workers · batch 8 · augment in main": {
            "throughput": {"value": 80.0, "lower_value": 64.0, "upper_value": 80.0},
            "speedup": {"value": 2.0, "lower_value": 2.0, "upper_value": pytest.approx(2.2)},
        },
    }


NO_STEP = ",,,,,,,,"  # step_ms … wait_p99_ms: empty without --step-ms


def test_csv_is_one_row_per_point_and_round() -> None:
    rs = results(
        "run",
        [point("process", 2, [2.0, 4.0], [1.0, 1.0], memory_peak_mb=(100.0, 103.0), batch_mb=0.5, same_batches=True)],
    )
    lines = EXPORTERS["csv"](Shown((rs,), ())).splitlines()
    assert lines[0].startswith("kind,pipeline,loader,workers,batch_size,prefetch,augment_in,round,images,wall_s,")
    assert lines[1:] == [
        "run,light,process,2,8,2,workers,1,80,1.0,2.0,2.0,3.0,80.0,0.5,0.1,2.0,0.05,0.2,0.3,4,103.0,0.5"
        + NO_STEP
        + ",,True,False,opencv,",
        "run,light,process,2,8,2,workers,2,80,1.0,4.0,4.0,3.0,80.0,0.5,0.1,2.0,0.05,0.2,0.3,4,103.0,0.5"
        + NO_STEP
        + ",,True,False,opencv,",
    ]


def test_markdown_joins_the_tables() -> None:
    rs = results("run", [point("sequential", 0, [2.0], [2.0]), point("process", 2, [2.0], [1.0])])
    text = EXPORTERS["markdown"](Shown((rs,), tuple(grids(rs))))
    assert text.startswith("**light · batch 8 · Test CPU 3000 · 4 usable of 4 logical cores · testbox**\n\n| loader |")
    assert "| process | 2 | 80 | 1.000 | 80 | 2.00× |" in text


def test_a_table_into_a_file_is_plain_text(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path, "sweep-workers")
    writer.save(sweep_workers())
    res = CliRunner().invoke(app, ["report", str(writer.path), "-o", str(tmp_path / "t.txt")])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "t.txt").read_text()
    assert "\x1b[" not in text and "│ light    │ 1.00× (1.00–1.00) │" in text and "- light: best" not in text
