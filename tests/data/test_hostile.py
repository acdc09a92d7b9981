"""Hostile input (issue #32): the three holes found by generators, and property tests of every parser of
outside input in data/: image bytes (each format, each decoder installed), pipeline YAML (pdl's and
albumentations' own format) and list files. The property: a valid result, or one PdlError whose one line names
the file and quotes no value past ``bounds`` — never another exception, a hang or a value echoed whole."""

from __future__ import annotations

import importlib.util
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdl.data import bounds
from pdl.data.codec import check_decodable, decode, header_size
from pdl.data.decoders import NAMES, decode_with, exif_orientation, missing
from pdl.data.folder import ImageFolder
from pdl.data.lists import read_list
from pdl.data.pipeline import load_pipeline
from pdl.errors import PdlError

from ..conftest import examples

HOSTILE = Path(__file__).resolve().parents[1] / "fixtures" / "hostile"
IDAT_CLAIM = 2_499_813_376  # the length field of the PNG
RSS_BOUND_MB = 300
LINE_BOUND = 1000  # an error line: a path, a few quoted values (QUOTE_CHARS), one library reason (REASON_CHARS)
PROPERTY = settings(
    max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
DECODERS = [name for name in NAMES if missing(name) is None]


def one_line(exc: BaseException, names: str) -> None:
    text = str(exc)
    assert "\n" not in text and len(text) < LINE_BOUND, text[:2000]
    assert names in text, text


# --- the three holes ------------------------------------------------------------------------------------------


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(length: int, shape: tuple[int, int] = (597, 346)) -> bytes:
    """A PNG of ``shape`` (the issue's 346×597) in one IDAT chunk whose length field says ``length``."""
    rng = np.random.default_rng(0)
    h, w = shape
    image = (rng.integers(0, 64, (h, w, 3)) + np.arange(w)[None, :, None] // 2).astype(np.uint8)
    rows = b"".join(b"\0" + image[y].tobytes() for y in range(h))
    idat = zlib.compress(rows, 6)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    good = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    at = good.index(b"IDAT") - 4
    return good[:at] + struct.pack(">I", length) + good[at + 4 :]


def laughs(levels: int = 8, fan: int = 9) -> str:
    """The issue's alias bomb: ``levels`` levels of ``fan`` aliases each, given as a transform's arguments."""
    lines = [f"a0: &a0 [{', '.join(['lol'] * fan)}]"]
    lines += [f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * fan)}]" for k in range(1, levels + 1)]
    return "\n".join([*lines, f"transforms: [{{Blur: *a{levels}}}]", ""])


def nested(depth: int = 3000) -> str:
    return "transforms: [" + "{OneOf: {transforms: [" * depth + "Blur" + "]}}" * depth + "]\n"


def test_a_png_chunk_longer_than_the_file_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = np.frombuffer(png_claiming(IDAT_CLAIM), np.uint8)
    assert header_size(data) == (597, 346)  # the header check alone lets it through
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded"))
    with pytest.raises(PdlError) as info:
        decode("bomb.png", data)
    one_line(info.value, "bomb.png")
    assert "PNG chunk 'IDAT' at byte 33 claims 2,499,813,376 bytes" in str(info.value)


def test_a_jpeg_segment_longer_than_the_file_is_refused() -> None:
    ok, jpg = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    raw = bytearray(jpg.tobytes())
    raw[4:6] = b"\xff\xff"  # the APP0 segment's length: 65,535 bytes, in a file of a few hundred
    for name in DECODERS:
        with pytest.raises(PdlError, match=r"JPEG segment FFE0 at byte 2 claims 65,535 bytes") as info:
            decode_with(name, "seg.jpg", np.frombuffer(bytes(raw), np.uint8))
        one_line(info.value, "seg.jpg")


def test_a_declared_size_past_the_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(bounds.MAX_DECODED_ENV, "1")
    with pytest.raises(PdlError, match=r"pdl refuses more than 1 MB an image: set PDL_MAX_DECODED_MB") as info:
        decode("big.png", np.frombuffer(png_claiming(0, (600, 600))[:40], np.uint8))
    one_line(info.value, "big.png")


@pytest.mark.skipif("pillow" not in DECODERS, reason="needs the pillow extra")
def test_the_bound_counts_what_the_decoder_holds_not_only_its_output(monkeypatch: pytest.MonkeyPatch) -> None:
    # found by generated values (issue #32): the bound counted 3 bytes a pixel, but Pillow holds the source mode,
    # its RGB conversion and a copy; 400×400 is 0.46 MB as RGB and 1.5 MB at Pillow's peak
    monkeypatch.setenv(bounds.MAX_DECODED_ENV, "1")
    ok, jpeg = cv2.imencode(".jpg", np.full((400, 400, 3), 90, np.uint8))
    assert ok
    assert decode_with("opencv", "a.jpg", jpeg).shape == (400, 400, 3)
    with pytest.raises(PdlError, match=r"header claims 400×400 pixels, 2 MB decoded; pdl refuses more than 1 MB") as info:
        decode_with("pillow", "a.jpg", jpeg)
    one_line(info.value, "a.jpg")


def test_the_alias_bomb_and_the_deep_pipeline_are_one_line_each(tmp_path: Path) -> None:
    for name, text, says in (
        ("laughs.yaml", laughs(), "values with its aliases expanded"),
        ("deep.yaml", nested(), "nested more than 32 levels deep"),
    ):
        path = tmp_path / name
        path.write_text(text)
        t0 = time.perf_counter()
        with pytest.raises(PdlError, match=says) as info:
            load_pipeline(path)
        assert time.perf_counter() - t0 < 2
        one_line(info.value, str(path))


READER = """
import resource, sys, time
from pdl.errors import PdlError
from pdl.data.codec import read_image
from pdl.data.pipeline import load_pipeline
import albumentations
t0 = time.perf_counter()
{body}
print(round(time.perf_counter() - t0, 3))
"""


WRAPPER = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stdout.write(proc.stdout)
sys.stderr.write(proc.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def run_child(body: str, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """A fresh interpreter doing ``body``; (its outcome, its peak RSS in MB). The peak is RUSAGE_CHILDREN's in a
    wrapper process whose only child it is: this process's own may hold any earlier test's child."""
    reader = [sys.executable, "-c", READER.format(body=textwrap.dedent(body)), *args]
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *reader], capture_output=True, text=True, timeout=60)
    *out, peak_kb = proc.stdout.splitlines()
    proc.stdout = "\n".join(out)
    return proc, int(peak_kb) / 1024


@pytest.mark.slow
def test_the_three_inputs_cost_one_line_little_time_and_under_300_mb(tmp_path: Path) -> None:
    """Each in its own process: RUSAGE_CHILDREN's peak covers the reading process (a first run of the child
    sets the baseline: a process that imports pdl and reads nothing)."""
    (tmp_path / "bomb.png").write_bytes(png_claiming(IDAT_CLAIM))
    (tmp_path / "laughs.yaml").write_text(laughs())
    (tmp_path / "deep.yaml").write_text(nested())
    body = """
        try:
            read_image(sys.argv[1]) if sys.argv[1].endswith(".png") else load_pipeline(sys.argv[1])
        except PdlError as exc:
            print(exc)
    """
    for name in ("bomb.png", "laughs.yaml", "deep.yaml"):
        proc, peak_mb = run_child(body, str(tmp_path / name))
        message, seconds = proc.stdout.splitlines()
        assert proc.returncode == 0 and name in message, proc.stderr[-2000:]
        assert float(seconds) < 2, (name, seconds)
        assert peak_mb < RSS_BOUND_MB, (name, peak_mb)


@pytest.mark.parametrize("path", sorted(HOSTILE.glob("*")), ids=lambda p: p.name)
def test_each_minimized_finding_is_one_line(path: Path, tmp_path: Path) -> None:
    """tests/fixtures/hostile/: the inputs generators and the fuzz campaign found, minimized."""
    if path.suffix in (".yaml", ".yml"):
        with pytest.raises(PdlError) as info:
            load_pipeline(path)
        one_line(info.value, str(path))
    elif path.suffix in (".csv", ".tsv", ".txt"):
        with pytest.raises(PdlError) as info:
            ImageFolder(path)
        one_line(info.value, str(path))
    elif path.suffix == ".json":  # a results file: refused in one line, or shown as `pdl report` shows it
        from pdl.bench.files import load
        from pdl.report.grid import to_markdown
        from pdl.report.render import grids

        try:
            results = load(path)
        except PdlError as exc:
            one_line(exc, str(path))
        else:
            assert all(to_markdown(g) for g in grids(results))
    else:
        for name in DECODERS:
            try:
                image = decode_with(name, str(path), np.fromfile(path, np.uint8))
            except PdlError as exc:
                one_line(exc, str(path))
            else:
                assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


# --- images ---------------------------------------------------------------------------------------------------


def _exif_jpeg(orientation: int) -> bytes:
    ok, jpg = cv2.imencode(".jpg", np.arange(24 * 16 * 3, dtype=np.uint8).reshape(24, 16, 3))
    tiff = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += b"\0\0\0\0"
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\0\0" + tiff
    raw = jpg.tobytes()
    return raw[:2] + app1 + raw[2:]


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (12, 20, 3), np.uint8)
    out = [_exif_jpeg(6)]
    for ext in (".jpg", ".png", ".webp", ".bmp", ".tiff"):
        ok, buf = cv2.imencode(ext, image)
        out.append(buf.tobytes())
    gray16 = (rng.integers(0, 65535, (9, 7))).astype(np.uint16)
    out.append(cv2.imencode(".png", gray16)[1].tobytes())
    return out


SEEDS = _seeds()

# a length or size field set to a hostile value, as generators do
_HOSTILE_WORDS = [0, 1, 2, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, IDAT_CLAIM]


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["byte", "word", "cut", "insert"]))
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        if kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind == "word":
            word = draw(st.sampled_from(_HOSTILE_WORDS))
            data[at : at + 4] = struct.pack(draw(st.sampled_from([">I", "<I"])), word)
        elif kind == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(max_size=16))
    return bytes(data) or b"\0"


@PROPERTY
@given(data=mutated_images(), need=st.none() | st.tuples(st.integers(1, 64), st.integers(1, 64)))
def test_images_decode_or_give_one_line(data: bytes, need: tuple[int, int] | None) -> None:
    array = np.frombuffer(data, np.uint8)
    header_size(array)
    exif_orientation(array)
    for name in DECODERS:
        try:
            image = decode_with(name, "fuzz.img", array, need)
        except PdlError as exc:
            one_line(exc, "fuzz.img")
        else:
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@PROPERTY
@given(
    data=st.binary(max_size=64).map(lambda b: b"\xff\xd8\xff" + b)
    | st.binary(max_size=64).map(lambda b: b"\x89PNG\r\n\x1a\n" + b)
    | st.binary(max_size=64).map(lambda b: b"II*\0" + b)
    | st.binary(max_size=64).map(lambda b: b"RIFF\0\0\0\0WEBPVP8" + b)
)
def test_headers_of_random_bytes_give_a_size_or_one_line(data: bytes) -> None:
    array = np.frombuffer(data, np.uint8)
    size = header_size(array)
    assert size is None or all(isinstance(side, int) and side >= 0 for side in size)
    try:
        check_decodable("head.img", array)
    except PdlError as exc:
        one_line(exc, "head.img")


# --- pipeline YAML --------------------------------------------------------------------------------------------

SHIPPED = sorted((Path(__file__).resolve().parents[2] / "configs" / "pipelines").glob("*.yaml"))
_YAML_BITS = [
    "&a [1, 2]", "*a", "*b", "[*a, *a, *a]", "{", "}", "[", "]", "!!python/object:os.system", "!!binary AAAA", "!!timestamp x",
    "9" * 5000, "'" + "x" * 300, ": ", "- ", "\n", "\t", "~", "1e999", "-.inf", "{OneOf: {transforms: [", "Blur", "\0",
    "__class_fullname__: Compose", "transform:", "transforms:", "p: 2", "height: -1", "\ufeff", "<<: *a",
]  # fmt: skip


@st.composite
def mutated_yaml(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from([p.read_text() for p in SHIPPED] + [laughs(3, 3), nested(40)]))
    for _ in range(draw(st.integers(0, 5))):
        at = draw(st.integers(0, len(text)))
        cut_to = at + draw(st.integers(0, 8))
        text = text[:at] + draw(st.sampled_from(_YAML_BITS) | st.text(max_size=8)) + text[cut_to:]
    return text


def _serialized(tmp_path: Path) -> str:
    import yaml

    spec = load_pipeline("light").spec
    return yaml.safe_dump(spec)


@PROPERTY
@given(text=mutated_yaml())
def test_pipeline_yaml_builds_or_gives_one_line(text: str, tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_pipeline(path)
    except PdlError as exc:
        one_line(exc, str(path))


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(_YAML_BITS)), max_size=3))
def test_albumentations_own_format_builds_or_gives_one_line(edits: list[tuple[int, str]], tmp_path: Path) -> None:
    text = _serialized(tmp_path)
    for at, bit in edits:
        at %= len(text) + 1
        text = text[:at] + bit + text[at:]
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_pipeline(path)
    except PdlError as exc:
        one_line(exc, str(path))


_SIZED = {  # a transform, and the YAML of its arguments for an output of h × w
    "Resize": "{{height: {h}, width: {w}}}",
    "RandomResizedCrop": "{{size: [{h}, {w}]}}",
    "LongestMaxSize": "{{max_size: {h}}}",
    "PadIfNeeded": "{{min_height: {h}, min_width: {w}}}",
    "CenterCrop": "{{height: {h}, width: {w}}}",
}


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(_SIZED)), h=st.integers(1, 4000) | st.just(100_000), w=st.integers(1, 4000))
def test_an_output_size_past_the_bound_is_refused_before_the_probe_runs_it(
    name: str, h: int, w: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # found by generated values (issue #32): Resize to 100000×100000 asked OpenCV for 30 GB in the probe
    monkeypatch.setenv(bounds.MAX_DECODED_ENV, "16")  # 16 MB: what passes is cheap to probe
    w = h if name == "LongestMaxSize" else w
    path = tmp_path / "p.yaml"
    path.write_text(
        f"name: sized\ntransforms:\n  - {name}: {_SIZED[name].format(h=h, w=w)}\n  - Resize: {{height: 8, width: 8}}\n"
    )
    past = h * w * 3 > 16 << 20
    try:
        load_pipeline(path)
    except PdlError as exc:
        one_line(exc, str(path))
        assert past == ("is past the bound of 16 MB (PDL_MAX_DECODED_MB)" in str(exc)), str(exc)
        return
    assert not past


def test_a_yaml_file_past_the_size_bound_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * bounds.MAX_CONFIG_BYTES)
    with pytest.raises(PdlError, match="a pipeline file is at most 1,048,576") as info:
        load_pipeline(path)
    one_line(info.value, str(path))


def test_a_yaml_alias_cycle_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "cycle.yaml"
    path.write_text("transforms: &t [{OneOf: {transforms: *t}}]\n")
    with pytest.raises(PdlError, match="a cycle") as info:
        load_pipeline(path)
    one_line(info.value, str(path))


# --- list files -----------------------------------------------------------------------------------------------

_CELLS = st.sampled_from(['"', '""', '"a,b"', "\0", "\r", "\x85", "\u2028", "#", "~", "~nobody/x.png", "a.png", "../b.jpg",
                          "9" * 30, "-" + "9" * 25, "x" * 200, ",", "\t", " ", "\ufeff", "é.png"]) | st.text(max_size=6)  # fmt: skip


@PROPERTY
@given(
    suffix=st.sampled_from([".csv", ".tsv", ".txt"]),
    header=st.sampled_from(["path,label", "path\tlabel", "image", "file,class", "x,y", ""]),
    rows=st.lists(st.lists(_CELLS, max_size=4), max_size=6),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]),
    long_line=st.booleans(),
)
def test_lists_read_or_give_one_line(
    suffix: str, header: str, rows: list[list[str]], encoding: str, long_line: bool, tmp_path: Path
) -> None:
    sep = "\t" if suffix == ".tsv" else ","
    lines = [header, *(sep.join(cells) for cells in rows)]
    if long_line:
        lines.append("y" * (bounds.MAX_LINE_CHARS + 1))
    path = tmp_path / f"list{suffix}"
    path.write_bytes("\n".join(lines).encode(encoding, errors="replace"))
    try:
        folder = ImageFolder(path)
    except PdlError as exc:
        one_line(exc, str(path))
    else:
        assert len(folder) == len(folder.labels) >= 1 and folder.labels.dtype == np.int64
        read_list(path)


def test_a_label_past_int64_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text("path,label\na.png,1\nb.png,99999999999999999999999\n")
    with pytest.raises(PdlError, match="does not fit in 64 bits") as info:
        ImageFolder(path)
    one_line(info.value, str(path))


def test_a_nul_byte_in_a_list_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "l.txt"
    path.write_bytes(b"a.png\nb\0.png\n")
    with pytest.raises(PdlError, match="line 2: a NUL byte") as info:
        ImageFolder(path)
    one_line(info.value, str(path))


@pytest.mark.skipif(importlib.util.find_spec("PIL") is None, reason="needs Pillow")
def test_exif_orientation_of_every_value_is_applied_or_ignored() -> None:
    for value in range(0, 12):
        array = np.frombuffer(_exif_jpeg(value), np.uint8)
        assert exif_orientation(array) == (value if 1 <= value <= 8 else 1)
        for name in DECODERS:
            image = decode_with(name, "o.jpg", array)
            assert sorted(image.shape[:2]) == [16, 24]
