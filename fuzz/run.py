"""Coverage-guided fuzzing of pdl's parsers of outside input (issue #32), outside the test suite.

    pip install -e ".[fuzz]"
    python fuzz/run.py --target images --minutes 30      # images | yaml | lists | results | state

Seeds the corpus from what pdl ships (generated images of each format, configs/pipelines/*.yaml, lists, the
results files in tests/fixtures/, a loader state), then lets atheris (libFuzzer) mutate them for the given time.
The property is the suite's: a valid result or one PdlError; any other exception is a finding, and so is memory
past the cap (the address space is limited with RLIMIT_AS and libFuzzer's -rss_limit_mb, and images are decoded
under PDL_MAX_DECODED_MB=256 so pdl's own bound lies below the cap). A finding's input is written to the work
folder (crash-*, oom-*, timeout-*): minimize it (-minimize_crash=1), then commit it under tests/fixtures/hostile/
with a regression test. libFuzzer's last line reports the inputs run ("#N DONE ... exec/s").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import sys
import tempfile
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("images", "yaml", "lists", "results", "state")
CAP_MB = 2048  # address space above the process's own at start: an allocation past it fails, a finding
RSS_MB = 1024  # libFuzzer's own watch on resident memory
MAX_LEN = 65536  # bytes of one input
os.environ.setdefault("PDL_MAX_DECODED_MB", "256")

with atheris.instrument_imports(include=["pdl"]):
    import numpy as np

    from pdl.bench.files import load
    from pdl.data.decoders import NAMES, decode_with, missing
    from pdl.data.folder import ImageFolder
    from pdl.data.pipeline import load_pipeline
    from pdl.errors import PdlError
    from pdl.loaders import LoaderSpec
    from pdl.loaders.resume import check_state, make_state
    from pdl.report.grid import to_markdown
    from pdl.report.render import grids

DECODERS = [name for name in NAMES if missing(name) is None]
SCRATCH = Path(tempfile.mkdtemp(prefix="pdl-fuzz-"))


class Items:
    def __len__(self) -> int:
        return 20

    def __getitem__(self, i: int) -> np.ndarray:
        return np.zeros((2, 2, 3), np.uint8)


SPEC = LoaderSpec(batch_size=5, shuffle=True, seed=3)


def fuzz_images(data: bytes) -> None:
    array = np.frombuffer(data, np.uint8) if data else np.zeros(1, np.uint8)
    for name in DECODERS:
        try:
            image = decode_with(name, "fuzz.img", array, (32, 32) if data[:1] == b"\xff" else None)
        except PdlError:
            continue
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def _file(data: bytes, suffix: str) -> Path:
    path = SCRATCH / f"input{suffix}"
    path.write_bytes(data)
    return path


def fuzz_yaml(data: bytes) -> None:
    try:
        load_pipeline(_file(data, ".yaml"))
    except PdlError:
        pass


def fuzz_lists(data: bytes) -> None:
    suffix = (".csv", ".tsv", ".txt")[data[0] % 3] if data else ".txt"
    try:
        ImageFolder(_file(data[1:], suffix))
    except PdlError:
        pass


def fuzz_results(data: bytes) -> None:
    try:
        results = load(_file(data, ".json"))
    except PdlError:
        return
    for grid in grids(results):  # what loads, `pdl report` shows, whatever values the file holds
        to_markdown(grid)


def fuzz_state(data: bytes) -> None:
    try:
        state = json.loads(data)
    except (ValueError, RecursionError):
        return  # not JSON: states come to load_state_dict as Python objects
    try:
        check_state(state, Items(), SPEC, 4)
    except PdlError:
        pass


def seeds(target: str) -> list[bytes]:
    """What pdl ships (or makes) of this kind of input."""
    if target == "images":
        import cv2

        image = np.random.default_rng(0).integers(0, 256, (24, 40, 3), np.uint8)
        out = [cv2.imencode(ext, image)[1].tobytes() for ext in (".jpg", ".png", ".webp", ".bmp", ".tiff")]
        exif = b"II*\0" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) + b"\0" * 4
        jpg = out[0]
        out.append(jpg[:2] + b"\xff\xe1" + struct.pack(">H", 8 + len(exif)) + b"Exif\0\0" + exif + jpg[2:])
        # real photographs (`pdl inputs --photos`), where made: each format, within libFuzzer's -max_len
        photos = sorted(p for p in (ROOT / "photos").rglob("*.*") if p.stat().st_size <= MAX_LEN)
        return out + [p.read_bytes() for p in photos[::8][:30]]
    if target == "yaml":
        return [p.read_bytes() for p in sorted((ROOT / "configs" / "pipelines").glob("*.yaml"))]
    if target == "lists":
        return [b"\0path,label\na.png,0\nb/c.jpg,1\n", b"\1image\tclass\nx.png\tcat\n", b"\2a.png\n# c\nb.jpg\n"]
    if target == "results":
        return [p.read_bytes() for p in sorted((ROOT / "tests" / "fixtures").glob("*.json"))]
    return [json.dumps(make_state(Items(), SPEC, 1, 2)).encode()]


def cap_memory() -> None:
    """RLIMIT_AS: the address space the process has now (the interpreter, numpy, OpenCV, albumentations) + CAP_MB."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[0])
    now = pages * os.sysconf("SC_PAGE_SIZE")
    limit = now + (CAP_MB << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=TARGETS, required=True)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--work", type=Path, default=None, help="corpus and findings (default: a folder under $TMPDIR)")
    args, rest = parser.parse_known_args()
    work = args.work or Path(tempfile.gettempdir()) / "pdl-fuzz" / args.target
    corpus = work / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds(args.target)):
        (corpus / f"seed-{i}").write_bytes(seed)
    if args.target == "yaml":
        load_pipeline("light")  # albumentations imported before the cap: its import is not a finding
    cap_memory()
    target = {"images": fuzz_images, "yaml": fuzz_yaml, "lists": fuzz_lists, "results": fuzz_results, "state": fuzz_state}
    argv = [
        sys.argv[0],
        f"-max_total_time={max(1, int(args.minutes * 60))}",
        f"-rss_limit_mb={RSS_MB}",
        "-timeout=10",
        f"-max_len={MAX_LEN}",
        "-print_final_stats=1",
        f"-artifact_prefix={work}/",
        *rest,
        str(corpus),
    ]
    atheris.Setup(argv, target[args.target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
