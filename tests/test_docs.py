"""The documentation: the generated reference pages say what the code says, the README stays short and starts with
the two commands, and CI builds the site strictly."""

from __future__ import annotations

import copy
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import tomllib
import typer.main
import yaml

from pdl.bench.files import load
from pdl.cli import app

ROOT = Path(__file__).resolve().parent.parent
README_COMMANDS = [
    'python3 -m venv .venv && .venv/bin/pip install -e ".[albumentations]" && .venv/bin/pdl run',
    'python3 -m venv .venv && .venv/bin/pip install -e ".[albumentations,test,plot,torch,ray,photos,peers,pillow,simplejpeg]" && .venv/bin/pytest',
]
REGENERATE = "out of date: run python docs/gen_reference.py, then commit docs/reference/"


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pdl_docs_gen_reference", ROOT / "docs" / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _changed_lines(a: str, b: str) -> set[str]:
    return set(a.splitlines()) ^ set(b.splitlines())


# --- the generated references -----------------------------------------------------------------------------------


def test_the_cli_reference_is_what_the_app_says(gen: ModuleType) -> None:
    assert gen.CLI_PAGE.read_text(encoding="utf-8") == gen.cli_markdown(), f"docs/reference/cli.md {REGENERATE}"


def test_the_results_reference_is_what_records_says(gen: ModuleType) -> None:
    assert gen.RESULTS_PAGE.read_text(encoding="utf-8") == gen.results_markdown(), f"docs/reference/results.md {REGENERATE}"


def test_an_option_added_to_a_copy_of_the_app_fails_the_check(gen: ModuleType) -> None:
    """The check is not vacuous: the same comparison, on a copy of the app with one more option, differs from the
    committed page, and the difference is that option."""
    command = typer.main.get_command(app)  # a fresh click command each call: the app itself is untouched
    run = command.commands["run"]
    planted = copy.copy(next(p for p in run.params if p.name == "seed"))
    planted.name, planted.opts, planted.help = "planted", ["--planted"], "An option the committed reference lacks."
    run.params.append(planted)
    committed = gen.CLI_PAGE.read_text(encoding="utf-8")
    changed = _changed_lines(committed, gen.cli_markdown(command))
    assert changed and all("--planted" in line for line in changed), changed
    assert "--planted" not in gen.cli_markdown()  # and the real app does not have it


def test_a_changed_default_or_help_fails_the_check(gen: ModuleType) -> None:
    command = typer.main.get_command(app)
    batch = next(p for p in command.commands["run"].params if p.name == "batch_size")
    batch.default = 128
    assert any(
        "[default: 128]" in line for line in _changed_lines(gen.CLI_PAGE.read_text(encoding="utf-8"), gen.cli_markdown(command))
    )
    command = typer.main.get_command(app)
    command.commands["report"].help = "A changed summary."
    assert any(
        "A changed summary." in line
        for line in _changed_lines(gen.CLI_PAGE.read_text(encoding="utf-8"), gen.cli_markdown(command))
    )


def test_a_field_added_to_a_copy_of_records_fails_the_check(gen: ModuleType) -> None:
    source = gen.POINT.read_text(encoding="utf-8")
    anchor = "\n    def __post_init__(self) -> None:\n        rounds = "  # the end of Point's fields
    assert source.count(anchor) == 1
    planted = source.replace(anchor, '    planted_s: float = 0.0\n    """A planted field."""\n' + anchor)
    changed = _changed_lines(gen.RESULTS_PAGE.read_text(encoding="utf-8"), gen.results_markdown({gen.POINT: planted}))
    assert changed == {"| `planted_s` | `float` | `0.0` |  | A planted field. |"}


def test_a_changed_field_docstring_fails_the_check(gen: ModuleType) -> None:
    source = gen.POINT.read_text(encoding="utf-8")
    old = '"""Batches in flight per worker."""'
    assert old in source
    changed = _changed_lines(
        gen.RESULTS_PAGE.read_text(encoding="utf-8"),
        gen.results_markdown({gen.POINT: source.replace(old, '"""Batches ahead."""')}),
    )
    assert any("Batches ahead." in line for line in changed), changed


def test_every_field_of_the_results_file_has_its_meaning_in_the_source(gen: ModuleType) -> None:
    """The page's meanings come only from the source: a field without a docstring (or comment) under it fails."""
    assert gen.undocumented() == set()


# --- the README, the site, CI -----------------------------------------------------------------------------------


def test_the_readme_is_short_and_its_first_code_block_is_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200, "README.md: at most 200 lines; the rest belongs in docs/"
    first = re.search(r"^```[a-z]*\n(.*?)^```", text, re.S | re.M)
    assert first is not None
    commands = [line for line in first.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands == README_COMMANDS


def _extras(text: str) -> set[str]:
    found = re.search(r'pip install -e "\.\[([^\]]+)\]"', text)
    assert found is not None, text
    return set(found.group(1).split(","))


def test_ci_installs_at_least_what_the_readme_test_command_installs_and_builds_the_site_strictly() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert _extras(README_COMMANDS[1]) <= _extras(script)
    assert "mkdocs build --strict" in script
    docs_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["docs"]
    assert {re.split(r"[=<>!~\[]", req)[0] for req in docs_extra} >= {"mkdocs", "mkdocs-material"}
    assert "/site/" in (ROOT / ".gitignore").read_text().splitlines()


def _nav_pages(nav: list[object]) -> list[str]:
    pages: list[str] = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += _nav_pages(value) if isinstance(value, list) else [str(value)]
    return pages


def test_every_page_is_in_the_nav_and_every_nav_entry_is_a_page() -> None:
    """What `mkdocs build --strict` checks too, here without mkdocs installed."""

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # mkdocs' own tags (!relative)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)
    docs = ROOT / config["docs_dir"]
    nav = _nav_pages(config["nav"])
    assert sorted(nav) == sorted(str(p.relative_to(docs)) for p in docs.rglob("*.md") if "results" not in p.parts)
    assert config["theme"]["name"] == "material" and config["strict"] is True


def test_the_readme_links_point_at_files_that_exist() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = {t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)}
    assert targets, "the README links into the documentation"
    assert not [t for t in targets if t and not (ROOT / t).exists()]


def test_the_figures_are_drawn_from_results_files_pdl_reads() -> None:
    results = ROOT / "docs" / "results"
    for name in ("sweep", "history"):
        files = sorted((results / name).glob("*.json"))
        assert files, f"docs/results/{name}/ holds the results the figure is drawn from"
        assert all(load(f).complete for f in files)
        assert (results / f"{name}.png").exists()


def test_every_pdl_import_the_docs_show_works() -> None:
    """A module moved (issue 23 moved many) must not leave a page telling users to import from where it was."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    shown = {line.strip() for page in pages for line in page.read_text(encoding="utf-8").splitlines()
             if re.match(r"\s*(from pdl[.\w]* import [\w, ]+|import pdl[.\w]*)\s*(#.*)?$", line)}  # fmt: skip
    assert len(shown) >= 2
    broken = []
    for line in sorted(shown):
        try:
            exec(line.split("#")[0], {})  # our own docs' import lines
        except ImportError as exc:
            broken.append(f"{line}: {exc}")
    assert broken == []
    with pytest.raises(ImportError):
        exec("from pdl.dataset import read_image", {})  # where the docs pointed before the move
