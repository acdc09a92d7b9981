"""The project's own promises about its checks: CI's verdict never changes with a tool release nobody chose."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_the_lint_format_and_type_tools_are_pinned_and_pre_commit_runs_those() -> None:
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    pins = {re.split(r"[=<>!~]", req)[0]: req for req in dev}
    for tool in ("ruff", "mypy", "types-PyYAML", "types-psutil"):
        assert re.fullmatch(rf"{re.escape(tool)}==[\d.]+", pins[tool]), pins[tool]
    hooks = [h for repo in yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"] for h in repo["hooks"]]
    assert {h["entry"].split()[0] for h in hooks} == {"ruff", "mypy"}
    assert all(h["language"] == "system" for h in hooks)  # the installed, pinned tools: no version of their own


def test_ci_runs_the_suite_in_a_fresh_environment_and_checks_for_leftovers() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    assert 'TMPDIR="$work/tmp"' in script and 'HOME="$work/home"' in script and "-u RAY_TMPDIR" in script
    assert ".ci/leftovers.py check" in script


def test_the_shipped_pipelines_are_the_ones_users_find_under_configs() -> None:
    """The package's copy (package data: no symlink, which breaks Windows checkouts and sdists) and the top-level
    configs/pipelines/ users read: one content, checked here, so the two can never drift."""
    top = {p.name: p.read_bytes() for p in (ROOT / "configs" / "pipelines").glob("*.yaml")}
    shipped = {p.name: p.read_bytes() for p in (ROOT / "src" / "pdl" / "configs" / "pipelines").glob("*.yaml")}
    assert top and shipped == top, "edit configs/pipelines/, then copy it: cp configs/pipelines/*.yaml src/pdl/configs/pipelines/"
    assert not (ROOT / "src" / "pdl" / "configs").is_symlink()
