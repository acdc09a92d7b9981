"""The reusable GitHub Action (.github/actions/compare/action.yml): its steps run here, as a runner would run them,
on a clone of this repository: the base worktree, a venv per side, `pdl compare`, the job summary, the cleanup.

Only the install is cheaper than the action's default (pip from the package index would take minutes): each
side's venv gets its own checkout's src/ and this environment's packages through .pth files."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

import pdl

REPO = Path(pdl.__file__).resolve().parents[2]
ACTION = REPO / ".github" / "actions" / "compare" / "action.yml"
INSTALL = (
    "site=$(python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])'); "
    'echo "$PWD/src" > "$site/pdl-src.pth"; echo "{deps}" > "$site/zz-deps.pth"'
)


def evaluate(expression: str, context: dict[str, str]) -> str:
    """A GitHub expression of the kinds the action uses: names, and ``a || b`` (the first that is not empty)."""
    for name in (part.strip() for part in expression.split("||")):
        if context.get(name):
            return context[name]
    return ""


def substitute(text: str, context: dict[str, str]) -> str:
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: evaluate(m[1], context), text)


def outputs(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line) if path.exists() else {}


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_actions_steps_compare_head_with_its_base_and_clean_up(images: Path, tmp_path: Path) -> None:
    action = yaml.safe_load(ACTION.read_text())
    assert action["runs"]["using"] == "composite" and set(action["outputs"]) == {"exit-code", "table"}
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "--quiet", "--shared", str(REPO), str(clone)], check=True)
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    summary = tmp_path / "summary.md"
    args = f"--inputs {images} --workers 1 --batch-size 5 --pipeline light --max-pairs 6 --max-time 20 --wait-quiet 0 --quiet"
    given = {
        "base-ref": "HEAD",  # A/A: this commit on both sides (HEAD~1 may predate pdl compare)
        "pipeline": "light",
        "args": args,
        "install": INSTALL.format(deps=sysconfig.get_paths()["purelib"]),
        "python": sys.executable,
        "venv-args": "--without-pip",
    }
    context = {
        f"inputs.{k}": v for k, v in {**{k: str(i.get("default", "")) for k, i in action["inputs"].items()}, **given}.items()
    }
    context["runner.temp"] = str(temp)
    for step in action["runs"]["steps"]:
        assert step["shell"] == "bash"
        env = {k: substitute(str(v), context) for k, v in step.get("env", {}).items()}
        found = tmp_path / f"output-{step.get('id', 'cleanup')}"
        done = subprocess.run(
            ["bash", "-c", step["run"]],
            cwd=clone,
            env={**_env(), **env, "GITHUB_OUTPUT": str(found), "GITHUB_STEP_SUMMARY": str(summary)},
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert done.returncode == 0, (step["name"], done.stdout, done.stderr)
        for name, value in outputs(found).items():
            context[f"steps.{step['id']}.outputs.{name}"] = value
    code = context["steps.compare.outputs.exit-code"]
    assert code in ("0", "3")  # A/A: never a regression; 3 when the suite's load left too few quiet pairs
    table = Path(context["steps.compare.outputs.table"]).read_text()
    assert "**compare · light, 1 workers, batch 5" in table and "pairs kept" in table
    assert code == "3" or "| images/s | process |" in table  # 3: every pair dropped, none to judge
    assert "same work on both sides" in table and table in summary.read_text()
    base_py, head_py = context["steps.envs.outputs.base"], context["steps.envs.outputs.head"]
    assert base_py != head_py and Path(base_py).parent.parent.name == "venv-base"
    assert not (temp / "pdl-compare" / "base").exists()  # the worktree is gone
    listed = subprocess.run(["git", "worktree", "list"], cwd=clone, capture_output=True, text=True, check=True).stdout
    assert listed.count("\n") == 1


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
