"""Hostile results files (issue #32): every shipped fixture (schema versions 1 on, so every migration) mutated,
and JSON past the bounds. ``files.load`` gives a ResultSet or one ResultsError line naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdl.bench.files import load
from pdl.data import bounds
from pdl.errors import PdlError
from pdl.report.export import to_markdown
from pdl.report.render import grids

from ..conftest import examples

FIXTURES = sorted((Path(__file__).resolve().parents[1] / "fixtures").glob("*.json"))
_VALUES = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=10) | st.just("x" * 5000)
    | st.lists(st.integers(), max_size=3) | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
    | st.builds(lambda: [[[]]])  # a new list each draw: st.just's one list, placed twice, became a cycle
)  # fmt: skip


def one_line(exc: BaseException, path: Path) -> None:
    text = str(exc)
    assert "\n" not in text and str(path) in text and len(text) < 1000, text[:2000]


def paths_of(node: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            out += paths_of(v, (*prefix, i))
    return out


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), fixture=st.sampled_from(FIXTURES))
def test_a_mutated_results_file_loads_or_gives_one_line(data: st.DataObject, fixture: Path, tmp_path: Path) -> None:
    tree = json.loads(fixture.read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(paths_of(tree)[1:]))
        parent = tree
        for key in where[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[where[-1]]
        else:
            parent[where[-1]] = data.draw(_VALUES)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(tree))
    try:
        rs = load(path)
    except PdlError as exc:
        one_line(exc, path)
        return
    for grid in grids(rs):  # what loads, `pdl report` shows: no exception from any value a file may hold
        to_markdown(grid)


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.sampled_from([f.read_text() for f in FIXTURES]), at=st.integers(0, 10_000), bit=st.text(max_size=4))
def test_damaged_json_text_gives_one_line(text: str, at: int, bit: str, tmp_path: Path) -> None:
    at %= len(text)
    path = tmp_path / "r.json"
    path.write_text(text[:at] + bit + text[at + len(bit) :], errors="surrogatepass")
    try:
        load(path)
    except PdlError as exc:
        one_line(exc, path)


@pytest.mark.parametrize(
    "text",
    ['{"schema": "pdl.results", "version": 1, "x": ' + "[" * 40 + "]" * 40 + "}", "[" * 100_000 + "]" * 100_000, "9" * 5000],
    ids=["nested-40", "nested-100000", "huge-int"],
)
def test_json_past_the_bounds_is_one_line(text: str, tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text(text)
    with pytest.raises(PdlError) as info:
        load(path)
    one_line(info.value, path)
    assert bounds.MAX_NESTING == 32


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["wall_s", "baseline_wall_s", "speedup_rounds"]),
       value=st.sampled_from([0, -1.5, -0.0, 1e309, -1e309]) | st.floats(max_value=0) | st.just(float("nan")))  # fmt: skip
def test_a_time_that_is_not_a_positive_number_is_refused_naming_the_field(field: str, value: float, tmp_path: Path) -> None:
    # found by generated values (issue #32): a negative or NaN wall time loaded and was shown as a speed; the fuzz
    # campaign then found a batch size of 0 (ZeroDivisionError in the tune table): counts and ratios are checked too
    tree = json.loads(FIXTURES[-1].read_text())
    tree["points"][0][field][0] = value
    path = tmp_path / "r.json"
    path.write_text(json.dumps(tree))  # NaN and ±Infinity as Python's json writes them
    with pytest.raises(PdlError) as caught:
        load(path)
    one_line(caught.value, path)
    said = str(caught.value)
    assert f"{field} must hold positive, finite seconds and ratios" in said or f"{field}[0]: expected a finite number" in said


def test_a_shard_option_of_the_wrong_type_still_renders(tmp_path: Path) -> None:
    """Found by the test above (its replay blob b'AEEEQQFBHgBBBIEw'): options.world_size = "0" was a TypeError."""
    for value in ("0", None, True, 2.5, [3]):
        tree = json.loads(FIXTURES[0].read_text())
        tree["options"]["world_size"] = value
        path = tmp_path / "r.json"
        path.write_text(json.dumps(tree))
        for grid in grids(load(path)):
            assert "rank" not in grid.title
            to_markdown(grid)
