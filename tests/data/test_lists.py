"""--inputs as a list of files: CSV/TSV with a header, TXT one path a line; relative paths; missing files; bad lists."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pdl import ImageFolder
from pdl.cli import app
from pdl.errors import DatasetError

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()
QUICK = ["--pipeline", "light", "--workers", "2", "--batch-size", "2", "--repeats", "1"]


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "160"})


def jpgs(images: Path) -> list[Path]:
    return sorted(images.rglob("*.jpg"))


def test_csv_with_string_labels_maps_them_in_sorted_order(images: Path, tmp_path: Path) -> None:
    files = jpgs(images)[:6]
    names = ["zebra", "ant", "moth", "ant", "zebra", "moth"]
    lst = tmp_path / "labels.csv"
    lst.write_text("Path,Class\n" + "".join(f"{f},{n}\n" for f, n in zip(files, names, strict=True)))
    ds = ImageFolder(lst)
    assert ds.classes == ("ant", "moth", "zebra")
    assert ds.labels.tolist() == [2, 0, 1, 0, 2, 1]
    assert [ds.path(i) for i in range(len(ds))] == [str(f) for f in files]
    assert np.array_equal(ds[0], ImageFolder(images)[0])


def test_tsv_with_int_labels_keeps_them_and_resolves_relative_paths(images: Path, tmp_path: Path) -> None:
    files = jpgs(images)[:4]
    lst = tmp_path / "sub" / "set.tsv"
    lst.parent.mkdir()
    rows = [f"x\t{os.path.relpath(f, lst.parent)}\t{7 * i}\n" for i, f in enumerate(files)]
    assert not any(r.split("\t")[1].startswith("/") for r in rows)
    lst.write_text("extra\tfilename\ttarget\n" + "".join(rows))
    ds = ImageFolder(lst, limit=3)
    assert ds.labels.tolist() == [0, 7, 14] and len(ds) == 3
    assert [ds.path(i) for i in range(3)] == [str(f) for f in files[:3]]


def test_txt_one_path_a_line_with_blank_and_comment_lines(images: Path, tmp_path: Path) -> None:
    files = jpgs(images)[:3]
    lst = tmp_path / "list.txt"
    lst.write_text(f"# my images\n{files[0]}\n\n{files[1]}\n  {files[2]}  \n")
    ds = ImageFolder.from_list(lst)
    assert [ds.path(i) for i in range(3)] == [str(f) for f in files]
    assert ds.labels.tolist() == [0, 0, 0]


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("empty.csv", "", "the list is empty; give a header row"),
        ("header.csv", "path,label\n", "the list has no rows"),
        ("blank.txt", "\n# nothing\n", "the list has no rows"),
        (
            "nopath.csv",
            "name,label\na.jpg,1\n",
            "no path column in the header (name,label); name the column of paths one of: path",
        ),
    ],
)
def test_an_unusable_list_is_one_line_exit_2(tmp_path: Path, name: str, text: str, says: str) -> None:
    lst = tmp_path / name
    lst.write_text(text)
    with pytest.raises(DatasetError, match=str(lst)):
        ImageFolder(lst)
    res = invoke("run", "--inputs", str(lst), *QUICK, "--results", str(tmp_path / "r"))
    assert res.exit_code == 2 and says in res.stderr and str(lst) in res.stderr
    assert "Traceback" not in res.output and len(res.stderr.strip().splitlines()) == 1


def test_a_file_that_is_not_a_list_says_what_inputs_takes(tmp_path: Path) -> None:
    other = tmp_path / "notes.md"
    other.write_text("x")
    with pytest.raises(DatasetError, match=r"is a file, not a folder; .* or a list of them \(.csv, .tsv, .txt\)"):
        ImageFolder(other)


def test_run_on_a_csv_records_the_list_and_a_missing_file_fails_or_is_skipped(images: Path, tmp_path: Path) -> None:
    files = jpgs(images)[:5]
    missing = tmp_path / "gone.jpg"
    lst = tmp_path / "labels.csv"
    lst.write_text("image,label\n" + "".join(f"{f},{f.parent.name}\n" for f in files) + "gone.jpg,class_000\n")
    res = invoke("run", "--inputs", str(lst), *QUICK, "--results", str(tmp_path / "r1"), "--quiet")
    assert res.exit_code == 2 and f"{missing}: cannot read (file not found)" in res.stderr
    assert "Traceback" not in res.output
    res = invoke("run", "--inputs", str(lst), *QUICK, "--results", str(tmp_path / "r2"), "--on-error", "skip")
    assert res.exit_code == 0, res.output
    assert "skipped 1 unreadable image(s)" in res.stdout and str(missing) in res.stdout
    data = json.loads(next((tmp_path / "r2").glob("*.json")).read_text())
    assert data["options"]["inputs"] == str(lst) and data["options"]["images"] == 6
    assert all(p["images"] == 5 for p in data["points"])


def test_run_on_a_txt_list(images: Path, tmp_path: Path) -> None:
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"{f}\n" for f in jpgs(images)[:4]))
    res = invoke("run", "--inputs", str(lst), *QUICK, "--results", str(tmp_path / "r"), "--quiet")
    assert res.exit_code == 0, res.output
    data = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    assert data["options"]["inputs"] == str(lst) and all(p["images"] == 4 for p in data["points"])
