"""`pdl inputs --photos`: a reproducible folder of real photographs in mixed sizes and formats."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import pytest
from typer.testing import CliRunner

from pdl import ImageFolder
from pdl.cli import app
from pdl.data.codec import read_image
from pdl.data.photos import PhotoSet, build_photos, parse_formats, summary
from pdl.errors import ConfigError, MissingDependencyError

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()
COUNT = 24
SOURCES = (
    "astronaut", "chelsea", "coffee", "grace_hopper", "hubble_deep_field",
    "immunohistochemistry", "motorcycle", "retina", "rocket",
)  # fmt: skip


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "160"})


def build(out: Path, **kwargs: Any) -> PhotoSet:
    pytest.importorskip("skimage")
    return build_photos(out, **{"count": COUNT, **kwargs})


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> PhotoSet:
    return build(tmp_path_factory.mktemp("photos"), min_side=120, max_side=300)


def test_same_seed_same_bytes_and_another_seed_other_bytes(tmp_path: Path) -> None:
    build(tmp_path / "a", seed=3)
    build(tmp_path / "b", seed=3)
    build(tmp_path / "c", seed=4)
    a, b, c = (files(tmp_path / name) for name in "abc")
    assert len(a) == COUNT and a == b
    assert a.keys() != c.keys() or a != c


def test_one_class_folder_per_source_photo_dealt_evenly(built: PhotoSet) -> None:
    assert built.count == COUNT and built.sources == SOURCES
    assert [p.name for p in sorted(built.root.iterdir())] == list(SOURCES)
    per_class = Counter(p.parent.name for p in built.root.rglob("*.*"))
    assert sum(per_class.values()) == COUNT and set(per_class.values()) == {2, 3}
    assert dict(built.packages).keys() == {"scikit-image", "matplotlib"}


def test_longer_sides_within_the_range_asked(built: PhotoSet) -> None:
    sides = [max(cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape[:2]) for p in built.root.rglob("*.*")]
    assert all(120 <= s <= 300 for s in sides) and len(set(sides)) > COUNT // 2
    low, mid, high = built.longer_side
    assert (low, high) == (min(sides), max(sides)) and low < mid < high


def test_formats_are_mixed_and_some_files_are_single_channel(built: PhotoSet) -> None:
    paths = list(built.root.rglob("*.*"))
    by_format = Counter(p.suffix[1:] for p in paths)
    assert by_format == {"jpg": 16, "png": 4, "webp": 4} == dict(built.formats)
    gray = [p for p in paths if cv2.imread(str(p), cv2.IMREAD_UNCHANGED).ndim == 2]
    assert len(gray) == built.grayscale == 2 and all(p.suffix in (".jpg", ".png") for p in gray)


def test_one_format_asked_every_file_is_that_format(tmp_path: Path) -> None:
    made = build(tmp_path, count=12, formats=("jpg",))
    assert Counter(p.suffix for p in tmp_path.rglob("*.*")) == {".jpg": 12} and made.formats == (("jpg", 12),)
    assert made.grayscale == 1  # 10% of 12, rounded: JPEGs can be single-channel
    assert ", 12 jpg, 1 grayscale," in summary(made) and "png" not in summary(made)


def test_several_formats_share_as_the_default_mix_renormalised(tmp_path: Path) -> None:
    made = build(tmp_path, count=10, formats=("webp", "png"))
    assert made.formats == (("png", 5), ("webp", 5))  # 15/15 → 50/50, in FORMAT_SHARES order
    assert Counter(p.suffix for p in tmp_path.rglob("*.*")) == {".png": 5, ".webp": 5}


def test_no_upscale_uses_only_photos_large_enough_and_never_enlarges(tmp_path: Path) -> None:
    made = build(tmp_path, count=12, min_side=800, max_side=1400, upscale=False)
    assert made.upscaled == 0
    assert set(made.sources) == {"hubble_deep_field", "retina"}  # the shipped photos with a longer side ≥ 800 px
    sides = [max(cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape[:2]) for p in tmp_path.rglob("*.*")]
    assert len(sides) == 12 and max(sides) <= 1411  # retina, the largest source, is 1411 px
    upscaled = build(tmp_path / "up", count=12, min_side=800, max_side=1400)
    assert upscaled.upscaled > 0  # the same request, allowed to enlarge, does: the flag is what keeps it out


def test_formats_are_parsed_in_a_fixed_order_each_once() -> None:
    assert parse_formats("webp, JPG,jpg") == ("jpg", "webp")
    for bad, why in (("gif", "'gif' is not one of jpg, png, webp"), (" , ", "give at least one of jpg, png, webp")):
        with pytest.raises(ConfigError, match=why):
            parse_formats(bad)


def test_every_file_decodes_and_imagefolder_scans_the_folder(built: PhotoSet) -> None:
    folder = ImageFolder(built.root)
    assert len(folder) == COUNT and folder.classes == SOURCES
    for i in range(len(folder)):
        image = read_image(folder.path(i))
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == "uint8"


def test_sources_smaller_than_asked_are_upscaled_to_the_range(tmp_path: Path) -> None:
    made = build(tmp_path, count=9, min_side=1500, max_side=1600)
    sides = [max(cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape[:2]) for p in tmp_path.rglob("*.*")]
    assert len(sides) == 9 and all(1500 <= s <= 1600 for s in sides)
    assert made.upscaled == 9  # no source photo is 1500 px


def test_an_interrupted_build_leaves_only_whole_images(tmp_path: Path) -> None:
    pytest.importorskip("skimage")

    def stop(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_photos(tmp_path, count=COUNT, progress=stop)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) == 5 and all(read_image(str(p)).size for p in written)


def test_refuses_to_write_over_an_earlier_set(tmp_path: Path) -> None:
    build(tmp_path, count=2)
    with pytest.raises(ConfigError, match="astronaut' already exists; choose an empty --out folder"):
        build(tmp_path, count=2)


def test_without_scikit_image_one_line_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(MissingDependencyError) as info:
        build_photos(tmp_path, count=2)
    assert str(info.value) == "--photos needs scikit-image: pip install 'pdl[photos]'"
    res = invoke("inputs", "--photos", "--out", str(tmp_path), "--count", "2")
    assert res.exit_code == 2 and "--photos needs scikit-image: pip install" in res.stderr


def test_cli_writes_the_folder_and_prints_one_summary_line(tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    res = invoke("inputs", "--photos", "--out", str(tmp_path), "--count", "12", "--seed", "1")
    assert res.exit_code == 0, res.output
    assert len(list(tmp_path.rglob("*.*"))) == 12
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("wrote 12 real photos from scikit-image ") and "matplotlib" in line
    assert "9 class folders" in line and "longer side" in line and "jpg" in line and "webp" in line


def test_cli_formats_jpg_writes_jpegs_only_and_says_so(tmp_path: Path) -> None:
    pytest.importorskip("skimage")
    res = invoke("inputs", "--photos", "--formats", "jpg", "--out", str(tmp_path), "--count", "9", "--min-side", "600")
    assert res.exit_code == 0, res.output
    assert {p.suffix for p in tmp_path.rglob("*.*")} == {".jpg"}
    [line] = res.stderr.strip().splitlines()
    assert ", 9 jpg, " in line and "png" not in line and "webp" not in line and " upscaled" in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--photos", "--count", "0"], "--count 0: must be at least 1, e.g. --count 480"),
        (
            ["--photos", "--min-side", "300", "--max-side", "100"],
            "--min-side 300 is above --max-side 100: raise --max-side to at least 300",
        ),
        (["--photos", "--min-side", "4"], "--min-side 4: must be at least 16 pixels"),
        (["--photos", "--seed", "-1"], "--seed -1: must be 0 or more"),
        (["--photos", "--classes", "3"], "--classes 3 does not apply with --photos: drop it"),
        (["--count", "10"], "--count 10 does not apply without --photos: add --photos"),
        (["--photos", "--formats", "jpg,gif"], "--formats 'jpg,gif': 'gif' is not one of jpg, png, webp"),
        (["--formats", "jpg"], "--formats jpg does not apply without --photos: add --photos"),
        (["--no-upscale"], "--no-upscale does not apply without --photos: add --photos"),
        (["--photos", "--no-upscale", "--min-side", "2000", "--max-side", "3000"], "no shipped photo is that large"),
    ],
)
def test_bad_options_exit_2_with_one_line_naming_option_value_and_fix(tmp_path: Path, args: list[str], message: str) -> None:
    res = invoke("inputs", "--out", str(tmp_path / "out"), *args)
    assert res.exit_code == 2
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line
    assert not (tmp_path / "out").exists()
