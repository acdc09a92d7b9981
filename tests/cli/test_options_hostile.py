"""Hostile CLI option values (issue #32): numbers a generator picks, through typer's CliRunner as a user
types them. Every one ends in exit 2 and one error line (the inputs folder is empty, so a value that is valid
still ends there, before any work), never a traceback or a value echoed whole."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pdl.cli import app

from ..conftest import examples

runner = CliRunner()
NUMERIC = ["--workers", "--batch-size", "--prefetch", "--chunk-size", "--repeats", "--limit", "--seed", "--rank",
           "--world-size"]  # fmt: skip
NUMBERS = st.sampled_from(["-1", "0", "-0", "1e309", "nan", "inf", "-inf", "9" * 400, "0x10", "1_0", "１", "", " ", "2.5", "1e-320",
                           "\0", "-" + "9" * 30]) | st.integers(-(2**70), 2**70).map(str) | st.text(max_size=6)  # fmt: skip


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("empty")


def check(args: list[str]) -> None:
    res = runner.invoke(app, args, env={"COLUMNS": "160"})
    assert res.exit_code == 2, (args, res.exit_code, res.output[-3000:], res.exception)
    assert "Traceback" not in res.output and len(res.output) < 4000, res.output[-3000:]
    assert [line for line in res.output.splitlines() if line.strip()], res.output


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(NUMERIC), value=NUMBERS)
def test_a_numeric_option_runs_or_gives_one_line(option: str, value: str, empty: Path, tmp_path: Path) -> None:
    check(["run", "--inputs", str(empty), "--results", str(tmp_path), "--quiet", option, value])


# Found by generated values (issue #32): an empty path was Path(""), the current folder, so `--inputs ""` measured
# whatever the folder pdl ran in held; and an empty --pipelines list meant every shipped level.
PATHS = [["run", "--inputs"], ["run", "--results"], ["sweep-batch", "--results"], ["inputs", "--out"],
         ["report", "--output"], ["report", "--plot"], ["report", "--baseline"], ["report", "--history"], ["report"]]  # fmt: skip


@settings(max_examples=examples(20), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(PATHS), value=st.text(alphabet=" \t\n", max_size=3))
def test_an_empty_path_is_refused_naming_the_option(where: list[str], value: str, tmp_path: Path) -> None:
    res = runner.invoke(app, [*where, value], env={"COLUMNS": "300"})
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert lines[0].startswith("error: Invalid value for") and "is empty: give a path (. for the current folder)" in lines[0]
    assert (where[-1] if where[-1].startswith("--") else "files") in lines[0]


@pytest.mark.parametrize("command", ["sweep-workers", "decode"])
@pytest.mark.parametrize("value", ["", " , ", ","])
def test_a_pipelines_list_naming_nothing_is_refused(command: str, value: str, empty: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, [command, "--inputs", str(empty), "--results", str(tmp_path), "--pipelines", value])
    assert res.exit_code == 2 and res.output.strip() == f"error: --pipelines {value!r}: give at least one name, e.g. light,medium"
    assert not list(tmp_path.iterdir())
