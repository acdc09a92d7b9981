"""ImageFolder: scan rules, colour modes, and every way a file in a user's folder can be unreadable."""

from __future__ import annotations

import os
import struct
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest

from pdl import ImageFolder
from pdl.data.codec import decode, jpeg_size, read_image, reduced_scale
from pdl.data.synth import synth_image
from pdl.errors import DatasetError, ImageReadError

from ..conftest import write_image

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
    with pytest.raises(DatasetError, match=r"inputs folder '.*nope' does not exist; point `root` at"):
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


# --- reduced JPEG decode: decode at 1/2, 1/4 or 1/8 scale, never below what the pipeline's first resize needs


@cache
def _jpeg(h: int, w: int, progressive: bool = False) -> np.ndarray:
    image = np.random.default_rng([h, w]).integers(0, 255, (h, w, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    assert ok
    return buf


def _with_exif_orientation(jpeg: np.ndarray, orientation: int) -> np.ndarray:
    """The JPEG with an APP1 EXIF segment holding only an orientation tag (6: stored turned, shown upright)."""
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">HHHIHH", 1, 0x0112, 3, 1, orientation, 0) + b"\x00" * 4
    app1 = b"Exif\x00\x00" + tiff
    raw = jpeg.tobytes()
    return np.frombuffer(raw[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + raw[2:], np.uint8)


SIZES = [(300, 500), (511, 1023), (1024, 768), (2049, 1537)]
NEEDS = [(256, 256), (224, 224), (100, 300)]


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("size", [(1, 1), (17, 9), *SIZES])
def test_jpeg_size_reads_the_frame_header(size: tuple[int, int], progressive: bool) -> None:
    buf = _jpeg(*size, progressive)
    assert jpeg_size(buf) == cv2.imdecode(buf, cv2.IMREAD_COLOR).shape[:2] == size


def test_jpeg_size_is_none_for_other_data() -> None:
    ok, png = cv2.imencode(".png", RGB)
    assert ok
    garbage = np.frombuffer(b"\xff\xd8\xff\xe0\x00\x10JFIF garbage after a JPEG start", np.uint8)
    for data in [png, garbage, np.frombuffer(b"hello", np.uint8), _jpeg(300, 500)[:20]]:
        assert jpeg_size(data) is None


@pytest.mark.parametrize("need", NEEDS)
@pytest.mark.parametrize("size", SIZES)
def test_reduced_decode_is_opencvs_own_and_never_smaller_than_needed(size: tuple[int, int], need: tuple[int, int]) -> None:
    buf = _jpeg(*size)
    image = decode("x.jpg", buf, need)
    f = min(reduced_scale(size, need), reduced_scale(size[::-1], need))  # EXIF may turn it round: fit both ways
    assert image.shape[0] >= need[0] and image.shape[1] >= need[1]
    assert image.shape[:2] == (-(-size[0] // f), -(-size[1] // f))  # OpenCV rounds each side up
    if f < 8:  # the largest factor that fits: the next one would be too small one way or the other
        h, w = -(-size[0] // (2 * f)), -(-size[1] // (2 * f))
        assert not (h >= need[0] and w >= need[1] and w >= need[0] and h >= need[1])
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}
    assert np.array_equal(image, cv2.imdecode(buf, flags[f])[..., ::-1])


def test_reduced_scale_examples() -> None:
    assert reduced_scale((2049, 1537), (256, 256)) == 4  # 1537/8 rounds up to 193 < 256
    assert reduced_scale((2048, 2048), (256, 256)) == 8
    assert reduced_scale((2041, 2041), (256, 256)) == 8  # 2041/8 = 255.1 rounds up to 256
    assert reduced_scale((200, 200), (256, 256)) == 1  # smaller than needed: never upscaled further


def test_exif_rotated_jpeg_is_never_reduced_below_need() -> None:
    buf = _with_exif_orientation(_jpeg(300, 500), 6)  # shown as 500×300
    assert jpeg_size(buf) == (300, 500)
    assert decode("x.jpg", buf).shape[:2] == (500, 300)
    assert decode("x.jpg", buf, (100, 300)).shape[:2] == (500, 300)  # 1/2 would be 250×150: too narrow
    assert decode("x.jpg", buf, (100, 100)).shape[:2] == (250, 150)


def test_png_with_need_decodes_full_size(tmp_path: Path) -> None:
    path = write_image(tmp_path / "big.png", np.zeros((1024, 768, 3), np.uint8))
    assert read_image(str(path), (100, 100)).shape == (1024, 768, 3)


def test_image_folder_reduces_only_when_asked(tmp_path: Path) -> None:
    _jpeg(1024, 768).tofile(str(tmp_path / "a.jpg"))
    plain, reducing = ImageFolder(tmp_path), ImageFolder(tmp_path, reduce_decode=True)
    assert plain.read(0, (256, 256))[0].shape == (1024, 768, 3)
    image, read_s, decode_s = reducing.read(0, (256, 256))
    assert image.shape == (512, 384, 3) and read_s >= 0 and decode_s >= 0
    assert reducing.read(0)[0].shape == reducing[0].shape == (1024, 768, 3)  # no need, or no pipeline: full size
    assert "reduce_decode" not in repr(plain) and repr(reducing).endswith("reduce_decode=True)")


def test_reduced_then_resized_is_close_to_full_then_resized() -> None:
    # measured on these photo-like images: mean absolute difference 1.08 to 2.16 per image (of 255)
    for seed in range(4):
        rgb = synth_image(np.random.default_rng(seed), hue=0.3)
        ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        full, reduced = decode("x.jpg", buf), decode("x.jpg", buf, (100, 100))
        assert reduced.shape[0] < full.shape[0]
        a, b = (cv2.resize(x, (100, 100), interpolation=cv2.INTER_LINEAR).astype(np.float32) for x in (full, reduced))
        assert np.abs(a - b).mean() < 3.0


# -- decompression bombs and anything else OpenCV raises --------------------------------------------------------


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width``×``height``, with one tiny (wrong-sized) IDAT: a few dozen bytes."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def bmp_header(width: int, height: int) -> bytes:
    """A BMP whose BITMAPINFOHEADER claims ``width``×``height``, followed by 12 bytes of pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 12, 0, 0, 0, 0)
    return struct.pack("<2sIHHI", b"BM", 14 + 40 + 12, 0, 0, 14 + 40) + info + b"\0" * 12


def as_array(data: bytes) -> np.ndarray:
    return np.frombuffer(data, np.uint8)


def test_header_size_of_png_bmp_gif_webp_and_jpeg() -> None:
    from pdl.data.codec import header_size

    assert header_size(as_array(png_header(60000, 50000))) == (50000, 60000)
    assert header_size(as_array(bmp_header(100000, -7))) == (7, 100000)  # negative height: top-down rows
    assert header_size(as_array(b"GIF89a" + struct.pack("<HH", 640, 480) + b"\0" * 20)) == (480, 640)
    webp = b"RIFF" + b"\0" * 4 + b"WEBPVP8X" + b"\0" * 8 + (999).to_bytes(3, "little") + (499).to_bytes(3, "little")
    assert header_size(as_array(webp)) == (500, 1000)
    ok, jpg = cv2.imencode(".jpg", np.zeros((30, 40, 3), np.uint8))
    assert header_size(jpg) == (30, 40)
    assert header_size(as_array(b"II*\0" + b"\0" * 40)) is None  # TIFF: left to OpenCV


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (png_header(60000, 60000), "header claims 60000×60000 pixels; OpenCV refuses more than 2^30 pixels: "
         "set OPENCV_IO_MAX_IMAGE_PIXELS or skip it"),
        (bmp_header(100000, 100000), "header claims 100000×100000 pixels; OpenCV refuses more than 2^30 pixels"),
        (png_header(2_000_000, 1), "OpenCV refuses more than 2^20 wide: set OPENCV_IO_MAX_IMAGE_WIDTH"),
    ],
)  # fmt: skip
def test_a_bomb_is_refused_from_its_header_before_decoding(data: bytes, says: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: object) -> None:
        raise AssertionError("decoded a bomb")

    monkeypatch.setattr(cv2, "imdecode", never)
    with pytest.raises(ImageReadError, match="bomb.png") as info:
        decode("bomb.png", as_array(data))
    assert info.value.reason == says or says in info.value.reason


def test_the_limit_follows_opencvs_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from pdl.data.codec import check_size

    monkeypatch.setenv("OPENCV_IO_MAX_IMAGE_PIXELS", str(10 * 10))
    with pytest.raises(ImageReadError, match=r"11×10 pixels; OpenCV refuses more than 100 pixels"):
        check_size("x.png", as_array(png_header(11, 10)))
    check_size("x.png", as_array(png_header(10, 10)))  # at the limit: allowed


def test_any_cv2_error_while_decoding_is_an_image_read_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise cv2.error(
            "OpenCV(5.0.0) /io/opencv/modules/imgcodecs/src/loadsave.cpp:79: error: (-215:Assertion failed) "
            "pixels <= CV_IO_MAX_IMAGE_PIXELS in function 'validateInputImageSize'"
        )

    monkeypatch.setattr(cv2, "imdecode", refuse)
    ok, png = cv2.imencode(".png", RGB)
    with pytest.raises(ImageReadError) as info:
        decode("a.png", png)
    assert str(info.value) == "a.png: cannot decode (OpenCV: pixels <= CV_IO_MAX_IMAGE_PIXELS failed)"


def test_opencv_itself_refuses_what_the_header_check_refuses() -> None:
    """Without the header check, OpenCV raises cv2.error on the same file: the check only moves the refusal."""
    with pytest.raises(cv2.error):
        cv2.imdecode(as_array(png_header(60000, 60000)), cv2.IMREAD_COLOR)


def test_bombs_among_good_images_fail_naming_the_file_or_are_skipped_and_listed(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from pdl.cli import app
    from pdl.data.synth import generate

    generate(tmp_path / "imgs", classes=1, per_class=6)
    png = tmp_path / "imgs" / "class_000" / "00002-bomb.png"
    bmp = tmp_path / "imgs" / "class_000" / "00004-bomb.bmp"
    png.write_bytes(png_header(60000, 60000))
    bmp.write_bytes(bmp_header(100000, 100000))
    runner = CliRunner()
    base = ["run", "--inputs", str(tmp_path / "imgs"), "--workers", "2", "--batch-size", "2", "--repeats", "1",
            "--pipeline", "light"]  # fmt: skip
    res = runner.invoke(app, [*base, "--results", str(tmp_path / "r1"), "--quiet"], env={"COLUMNS": "200"})
    assert res.exit_code == 2, res.output
    assert f"{png}: header claims 60000×60000 pixels" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.output
    res = runner.invoke(app, [*base, "--results", str(tmp_path / "r2"), "--on-error", "skip"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "skipped 2 unreadable image(s)" in res.stdout and str(png) in res.stdout and str(bmp) in res.stdout
    points = json.loads(next((tmp_path / "r2").glob("*.json")).read_text())["points"]
    for p in points:
        assert [path for path, _ in p["skipped"]] == sorted([str(bmp), str(png)])
        assert p["images"] == 6
