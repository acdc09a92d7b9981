"""`pdl compare` as a user runs it: the verdict's exit code, the table, the results file `pdl report` reads, one-line
errors before any work, a Python without pdl (or with one too old), a side that dies, a parent that is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from pdl.bench import compare as engine
from pdl.bench.files import load
from pdl.cli import app
from pdl.machine.contention import Interference
from pdl.report.comparing import exit_code

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()
SMALL = ["--pipeline", "light", "--workers", "1", "--batch-size", "5", "--max-pairs", "6", "--max-time", "90"]
BASE = "name: base\ntransforms:\n  - Resize: {height: 256, width: 256}\n  - RandomCrop: {height: 200, width: 200}\n"
# several times the base's work an image (a 2048² resize first): decided in 6 pairs however loaded the machine is
SLOW_HEAD = "name: head\ntransforms:\n  - Resize: {height: 2048, width: 2048}\n  - Resize: {height: 256, width: 256}\n  - RandomCrop: {height: 200, width: 200}\n"


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.fixture
def quiet_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pairs' readings say the machine was quiet: the suite's other workers must not decide what a test of the
    command checks (dropping disturbed pairs is tested with a fake watch in tests/bench/test_compare.py)."""
    made = engine.watch_for

    def quiet(exp, status=None):  # type: ignore[no-untyped-def]
        watch = made(exp, status)
        watch.between = lambda a, b: Interference(0.0, 0.0, None, None, 0.0, watch.usable, len(watch.cpus))  # type: ignore[method-assign]
        watch.wait_left = 0.0
        return watch

    monkeypatch.setattr(engine, "watch_for", quiet)


@pytest.mark.slow
def test_aa_compare_prints_the_verdicts_saves_both_sides_and_report_reads_it(
    images: Path, tmp_path: Path, quiet_machine: None
) -> None:
    res = invoke("compare", "--inputs", str(images), *SMALL, "--results", str(tmp_path))
    [path] = tmp_path.glob("*-compare.json")
    rs = load(path)
    assert rs.kind == "compare" and rs.complete and rs.compared is not None
    # the exit code is the table's: whether this A/A passes under the suite's load is measured elsewhere (docs/ci-gate.md)
    assert res.exit_code == exit_code(rs.compared.measured), res.output
    assert "compare · light, 1 workers, batch 5" in res.stdout
    for row in ("images/s │ sequential", "images/s │    process", "speedup  │    process"):
        assert row in res.stdout
    assert "same work on both sides: the warm-up batches are bit-identical" in res.stdout
    kept = [p for p in rs.compared.pairs if p.kept]
    assert len(kept) >= 6 and {p.order for p in kept} == {"base,head", "head,base"}
    assert [(p.side, p.loader) for p in rs.points] == [
        ("base", "sequential"),
        ("base", "process"),
        ("head", "sequential"),
        ("head", "process"),
    ]
    assert all(p.rounds == len(kept) for p in rs.points)
    assert rs.compared.base.digest == rs.compared.head.digest
    shown = invoke("report", str(path))
    assert shown.exit_code == 0 and "images/s │    process" in shown.stdout
    exported = json.loads(invoke("report", str(path), "--format", "json").stdout)
    assert exported["compared"]["stopped"] == rs.compared.stopped != "running"


@pytest.mark.slow
@pytest.mark.alone  # its verdict needs the 6 pairs' evidence: beside other tests' workers they were inconclusive
def test_a_head_twice_as_slow_is_a_regression_exit_1(images: Path, tmp_path: Path, quiet_machine: None) -> None:
    head = tmp_path / "head.yaml"
    head.write_text(SLOW_HEAD)
    base = tmp_path / "base.yaml"
    base.write_text(BASE)
    args = ["--inputs", str(images), *SMALL, "--pipeline", str(head), "--base-pipeline", str(base), "--results", str(tmp_path)]
    res = invoke("compare", *args, "--format", "markdown")
    assert res.exit_code == 1, res.output
    assert "| images/s | sequential |" in res.stdout and "REGRESSED" in res.stdout
    assert "the sides made different batches" in res.stdout


def test_bad_options_are_one_line_before_any_side_starts(tmp_path: Path) -> None:
    cases = [
        (["--base-workers", "0"], "--base-workers must be a whole number >= 1. Found: 0"),
        (["--base-python", str(tmp_path / "nope")], f"--base-python {tmp_path / 'nope'}: no such executable file"),
        (["--base-loaders", "sequential,process,thread"], "name as many loaders on each side"),
        (["--max-pairs", "3"], "--max-pairs 3: at least 6"),
        (["--max-slowdown", "120%"], "--max-slowdown"),
        (["--pipeline", "nothere.yaml"], "nothere.yaml"),
    ]
    os.chdir(tmp_path)  # no inputs/ here: a typo must not make the default images first
    for args, said in cases:
        t0 = time.monotonic()
        res = invoke("compare", *args)
        assert res.exit_code == 2, (args, res.output)
        assert said in res.stderr and res.stderr.strip().count("\n") == 0, res.stderr
        assert time.monotonic() - t0 < 3 and not (tmp_path / "inputs").exists()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_python_without_pdl_or_with_one_too_old_is_one_line(images: Path, tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    bare = tmp_path / "bare" / "bin" / "python"
    res = invoke("compare", "--inputs", str(images), "--base-python", str(bare), *SMALL)
    assert res.exit_code == 2 and f"--base-python {bare}: that environment has no pdl" in res.stderr, res.output
    old = tmp_path / "old"
    (old / "pdl").mkdir(parents=True)
    (old / "pdl" / "__init__.py").write_text('__version__ = "0.1.0"\n')
    wrapper = tmp_path / "old-python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={old} exec {bare} "$@"\n')
    wrapper.chmod(0o755)
    res = invoke("compare", "--inputs", str(images), "--base-python", str(wrapper), *SMALL)
    assert res.exit_code == 2 and "is too old to serve pdl compare" in res.stderr, res.output
    assert res.stderr.strip().count("\n") == 0


def sides_of(parent: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(parent).children() if "pdl.bench.side" in " ".join(p.cmdline())]
    except psutil.NoSuchProcess:
        return []


def start_compare(images: Path, tmp_path: Path) -> tuple[subprocess.Popen[str], list[psutil.Process]]:
    cmd = [sys.executable, "-m", "pdl", "compare", "--inputs", str(images), "--results", str(tmp_path), "--quiet"]
    cmd += [*SMALL[:-4], "--max-pairs", "60", "--max-time", "60", "--wait-quiet", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    found: list[psutil.Process] = []
    while time.monotonic() < deadline:
        found = sides_of(proc.pid)
        if len(found) == 2 and all(len(p.children()) >= 1 for p in found):  # both set up: a worker each
            break
        time.sleep(0.2)
    assert len(found) == 2, "the sides did not start"
    time.sleep(1.0)  # into the pairs
    return proc, found


def everything(procs: list[psutil.Process]) -> list[psutil.Process]:
    return [q for p in procs for q in (p, *p.children(recursive=True))]


@pytest.mark.slow
def test_a_side_that_dies_is_named_and_nothing_is_left(images: Path, tmp_path: Path) -> None:
    proc, sides = start_compare(images, tmp_path)
    head = next(p for p in sides if p.pid == max(s.pid for s in sides))  # the head starts second
    tree = everything(sides)
    head.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode not in (0, 1, 3), stderr
    assert "head side" in stderr and "exit code -9" in stderr and stderr.strip().count("\n") == 0, stderr
    _, alive = psutil.wait_procs(tree, timeout=10)
    assert alive == []


@pytest.mark.slow
def test_killing_the_parent_takes_both_sides_and_their_workers(images: Path, tmp_path: Path) -> None:
    proc, sides = start_compare(images, tmp_path)
    tree = everything(sides)
    assert len(tree) >= 4  # two sides, a worker each
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    _, alive = psutil.wait_procs(tree, timeout=5)
    assert alive == [], [p.pid for p in alive]
