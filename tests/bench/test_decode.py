"""`pdl decode`: which images are decoded reduced and at which scale, the output difference it makes, and the
command end to end (results file, one-line errors). Never speed."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from pdl.bench.decode_gain import measure_gain
from pdl.bench.files import load
from pdl.cli import app
from pdl.data.folder import ImageFolder
from pdl.data.pipeline import load_pipeline
from pdl.loaders import LoaderSpec
from pdl.report.render import grids

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()
SPEC = LoaderSpec(batch_size=4, seed=0)


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "160"})


def photo(h: int, w: int, seed: int) -> np.ndarray:
    """Smooth, photo-like content: a reduced decode differs from a full one by little, but not by nothing."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 40), max(2, w // 40), 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def folder(root: Path, sizes: dict[str, tuple[int, int]]) -> Path:
    """``sizes``: file name (its extension picks the format) → (height, width), in two class folders."""
    for k, (name, (h, w)) in enumerate(sorted(sizes.items())):
        (root / f"c{k % 2}").mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / f"c{k % 2}" / name), photo(h, w, k))
    return root


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 JPEGs of 600×800 and 2 PNGs of the same size."""
    sizes = {f"j{i:02d}.jpg": (600, 800) for i in range(12)} | {f"p{i}.png": (600, 800) for i in range(2)}
    return folder(tmp_path_factory.mktemp("mixed"), sizes)


def test_jpegs_are_decoded_at_half_size_pngs_at_full_and_the_output_differs(mixed: Path) -> None:
    gain = measure_gain(ImageFolder(mixed), load_pipeline("light"), "sequential", SPEC, repeats=1)
    c = gain.census
    assert (c.need, c.scales, c.full, c.jpegs, c.reduced) == ((256, 256), ((2, 12), (4, 0), (8, 0)), 2, 12, 12)
    assert c.why_none() is None
    assert gain.difference.images == 12 and gain.difference.dtype == "uint8"
    assert 0 < gain.difference.mad < 10  # the same crops, a little softer or sharper
    assert (gain.full.reduce_decode, gain.reduced.reduce_decode) == (False, True)
    assert gain.full.images == gain.reduced.images == 14
    assert len(gain.reduced.speedup_rounds) == 1 and gain.reduced.baseline_wall_s == gain.full.wall_s
    assert gain.reduced.same_batches is False  # reduced decoding does change the batches


def test_the_scale_is_the_smallest_that_keeps_the_first_resize(tmp_path: Path) -> None:
    sizes = {"a.jpg": (520, 700), "b.jpg": (1100, 1024), "c.jpg": (2100, 2050), "d.jpg": (500, 900), "e.webp": (2100, 2100)}
    gain = measure_gain(ImageFolder(folder(tmp_path, sizes)), load_pipeline("light"), "sequential", SPEC, repeats=1)
    # 520 → 260 at 1/2; 1024 → 256 at 1/4; 2050 → 257 at 1/8 (sides round up); 500/2 = 250 < 256: full; WebP: full
    assert gain.census.scales == ((2, 1), (4, 1), (8, 1)) and gain.census.full == 2
    assert gain.difference.images == 3 and gain.difference.mad > 0


def test_nothing_reduced_means_no_difference_and_says_why(tmp_path: Path, mixed: Path) -> None:
    crop_first = tmp_path / "crop.yaml"
    crop_first.write_text("name: crop\ntransforms:\n  - CenterCrop: {height: 200, width: 200}\n")
    pngs = folder(tmp_path / "pngs", {f"p{i}.png": (600, 800) for i in range(3)})
    small = folder(tmp_path / "small", {f"s{i}.jpg": (300, 400) for i in range(3)})
    cases = [(mixed, str(crop_first), "not a fixed Resize"), (pngs, "light", "no JPEG"), (small, "light", "too small")]
    for root, pipeline, why in cases:
        gain = measure_gain(ImageFolder(root), load_pipeline(pipeline), "sequential", SPEC, repeats=1)
        assert gain.census.reduced == 0 and gain.census.full == len(ImageFolder(root))
        assert why in (gain.census.why_none() or "")
        assert (gain.difference.mad, gain.difference.images) == (0.0, 0)


def test_a_float_pipeline_reports_its_difference_in_its_own_units(mixed: Path) -> None:
    gain = measure_gain(ImageFolder(mixed, limit=4), load_pipeline("extreme"), "sequential", SPEC, repeats=1)
    assert gain.difference.dtype == "float32" and 0 < gain.difference.mad < 1  # normalised units, not 0–255


def test_process_loader_with_two_workers_counts_the_same_and_leaves_nothing(mixed: Path) -> None:
    spec = LoaderSpec(batch_size=4, seed=0, num_workers=2)
    gain = measure_gain(ImageFolder(mixed), load_pipeline("light"), "process", spec, repeats=1)
    assert (gain.census.reduced, gain.census.full) == (12, 2)
    assert gain.full.workers == gain.reduced.workers == 2 and gain.difference.mad > 0


def test_the_command_writes_a_decode_results_file_that_report_shows(mixed: Path, tmp_path: Path) -> None:
    result = invoke(
        "decode", "--inputs", str(mixed), "--pipelines", "light,medium", "--loader", "sequential",
        "--repeats", "1", "--limit", "6", "--batch-size", "3", "--results", str(tmp_path), "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "pdl decode" in result.output and "6 (1/2: 6)" in result.output and "MAD" in result.output
    [saved] = tmp_path.glob("*-decode.json")
    data = json.loads(saved.read_text())
    assert data["kind"] == "decode" and data["complete"]
    assert [d["pipeline"] for d in data["decoded"]] == ["light", "medium"] and "decode" not in data["options"]
    rs = load(saved)
    assert [(p.pipeline, p.reduce_decode) for p in rs.points] == [
        ("light", False), ("light", True), ("medium", False), ("medium", True),
    ]  # fmt: skip
    [grid] = grids(rs)
    assert [row[0] for row in grid.rows] == ["light", "medium"]
    shown = invoke("report", str(saved))
    assert shown.exit_code == 0 and "pdl decode" in shown.output
    gated = invoke("report", str(saved), "--baseline", str(saved))
    assert gated.exit_code == 2 and "a `pdl decode` file: the gate compares run, sweep and tune files" in gated.output


def test_a_command_that_reduces_nothing_says_so_in_one_line(tmp_path: Path) -> None:
    pngs = folder(tmp_path / "pngs", {f"p{i}.png": (600, 800) for i in range(3)})
    result = invoke(
        "decode", "--inputs", str(pngs), "--pipelines", "light", "--loader", "sequential", "--repeats", "1",
        "--results", str(tmp_path / "results"), "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "light: no image decoded reduced (no JPEG among the images)" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--loader", "nope"), "--loader 'nope': choose one of"),
        (("--pipelines", "lihgt"), "--pipeline 'lihgt' is neither"),
        (("--batch-size", "0"), "--batch-size must be a whole number >= 1"),
        (("--reduce-decode",), "No such option: --reduce-decode"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(mixed: Path, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = invoke("decode", "--inputs", str(mixed), "--results", str(tmp_path), *args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert not list(tmp_path.glob("*.json"))
