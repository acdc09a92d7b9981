"""ImageFolder: scan rules, colour modes, and every way a file in a user's folder can be unreadable."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from pdl import ImageFolder
from pdl.dataset import read_image
from pdl.errors import DatasetError, ImageReadError

from .conftest import write_image

RGB = np.zeros((4, 6, 3), np.uint8)


def test_scan_is_recursive_sorted_and_classes_are_first_level_folders(tmp_path: Path) -> None:
    for rel in ["b/2.PNG", "a/x/deep.jpeg", "a/1.jpg", "b/1.Tif", "top.bmp", "c/3.webp"]:
        write_image(tmp_path / rel, RGB)
    (tmp_path / "a" / "README.txt").write_text("not an image")
    (tmp_path / "a" / "notes.json").write_text("{}")
    write_image(tmp_path / ".hidden" / "h.jpg", RGB)
    write_image(tmp_path / "a" / ".dot.jpg", RGB)
    ds = ImageFolder(tmp_path)
    rel = [os.path.relpath(ds.path(i), tmp_path) for i in range(len(ds))]
    assert rel == ["a/1.jpg", "a/x/deep.jpeg", "b/1.Tif", "b/2.PNG", "c/3.webp", "top.bmp"]
    assert ds.classes == (".", "a", "b", "c")
    assert ds.labels.tolist() == [1, 1, 2, 2, 3, 0]
    assert ds.paths.dtype.kind == "S" and ds.labels.dtype == np.int64  # numpy arrays, not lists of str


def test_limit_keeps_the_first_images(images: Path) -> None:
    full, few = ImageFolder(images), ImageFolder(images, limit=4)
    assert len(few) == 4 and few.paths.tolist() == full.paths.tolist()[:4]


@pytest.mark.parametrize(
    ("name", "array"),
    [
        ("gray.png", np.full((5, 7), 200, np.uint8)),
        ("alpha.png", np.dstack([np.full((5, 7, 3), 9, np.uint8), np.full((5, 7), 128, np.uint8)])),
        ("deep.png", np.full((5, 7, 3), 65535, np.uint16)),
        ("tiny.jpg", np.full((1, 1, 3), 50, np.uint8)),
    ],
)
def test_every_colour_mode_reads_as_3_channel_uint8(tmp_path: Path, name: str, array: np.ndarray) -> None:
    image = read_image(str(write_image(tmp_path / name, array)))
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[:2] == array.shape[:2]


def test_reads_rgb_not_bgr(tmp_path: Path) -> None:
    bgr = np.zeros((3, 3, 3), np.uint8)
    bgr[..., 2] = 255  # red, in OpenCV's BGR order
    assert read_image(str(write_image(tmp_path / "red.png", bgr)))[0, 0].tolist() == [255, 0, 0]


def test_names_with_spaces_and_non_ascii(tmp_path: Path) -> None:
    write_image(tmp_path / "chats noirs" / "été 01.jpg", RGB)
    ds = ImageFolder(tmp_path)
    assert ds.classes == ("chats noirs",) and ds[0].shape == (4, 6, 3)


def _broken(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "cls" / f"{kind}.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("hello, I am not a JPEG")
    elif kind == "truncated":
        ok, buf = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
        path.write_bytes(buf.tobytes()[: len(buf) // 2])
    elif kind == "dangling":
        path.symlink_to(tmp_path / "nowhere.jpg")
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("empty", "cannot decode (empty file)"),
        ("text", "cannot decode (not an image"),
        ("truncated", "cannot decode (truncated JPEG"),
        ("dangling", "cannot read (dangling symlink)"),
    ],
)
def test_broken_files_raise_an_error_naming_the_file(tmp_path: Path, kind: str, reason: str) -> None:
    path = _broken(tmp_path, kind)
    ds = ImageFolder(tmp_path)  # the scan keeps it: an unreadable image, not a missing one
    assert len(ds) == 1
    with pytest.raises(ImageReadError) as info:
        ds[0]
    assert str(info.value).startswith(f"{path}: {reason}")
    assert info.value.path == str(path)


def test_truncated_jpeg_warning_does_not_reach_stderr(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ImageReadError):
        read_image(str(_broken(tmp_path, "truncated")))
    assert "Corrupt JPEG" not in capfd.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write_image(tmp_path / "c" / "locked.jpg", RGB)
    path.chmod(0)
    with pytest.raises(ImageReadError, match="permission denied"):
        read_image(str(path))


def test_missing_path_empty_folder_and_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"inputs folder '.*nope' does not exist; pass --inputs"):
        ImageFolder(tmp_path / "nope")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "README.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"no images \(jpg, jpeg, png.*\) found under '.*empty'"):
        ImageFolder(tmp_path / "empty")
    with pytest.raises(DatasetError, match="is a file, not a folder"):
        ImageFolder(tmp_path / "empty" / "README.txt")


def test_large_image_reads(tmp_path: Path) -> None:
    big = np.zeros((4000, 6000, 3), np.uint8)
    assert read_image(str(write_image(tmp_path / "big.jpg", big))).shape == (4000, 6000, 3)
