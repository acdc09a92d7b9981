"""`pdl profile` and the choice of decoder: every transform metered without changing the output, branches and
application counts, read/decode beside them, the decoders' pixels against OpenCV's, the one-line errors, the
results file and `pdl report`. Never speed."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from pdl._augment import augmentation_library
from pdl.bench import profile as profile_module
from pdl.bench.files import load
from pdl.bench.instrument import InstrumentationError, Instrumented, instrument, walk
from pdl.bench.outcomes import DecoderSpeed, Profiled, TransformCost
from pdl.bench.profile import profile_pipeline
from pdl.cli import app
from pdl.data import decoders
from pdl.data.decoders import decode_with, exif_orientation
from pdl.data.folder import ImageFolder
from pdl.data.pipeline import load_pipeline
from pdl.errors import ConfigError, MissingDependencyError
from pdl.loaders import LoaderSpec, make_loader
from pdl.loaders.batching import image_seed
from pdl.report.profiling import advice

from ..factories import point

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()
BRANCHES = """name: branches
transforms:
  - Resize: {height: 64, width: 64}
  - OneOf:
      transforms:
        - GaussianBlur: {blur_limit: [3, 5]}
        - MotionBlur: {}
      p: 0.7
  - SomeOf:
      n: 2
      transforms:
        - HorizontalFlip: {}
        - CLAHE: {p: 0.5}
        - ToGray: {}
  - VerticalFlip: {p: 0.0}
"""
NAMES = ["Resize", "OneOf", "GaussianBlur", "MotionBlur", "SomeOf", "HorizontalFlip", "CLAHE", "ToGray", "VerticalFlip"]


def invoke(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def branches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pipe") / "branches.yaml"
    path.write_text(BRANCHES)
    return path


def test_the_instrumented_copy_makes_the_plain_outputs_and_counts_every_application(branches: Path) -> None:
    pipeline = load_pipeline(str(branches))
    metered = instrument(pipeline)
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    for i in range(40):
        seed = image_seed(0, 0, i)
        assert np.array_equal(pipeline(image, seed), metered(image, seed))
    meters = list(walk(metered.meters))
    assert [m.name for m in meters] == NAMES
    assert [m.depth for m in meters] == [0, 0, 1, 1, 0, 1, 1, 1, 0]
    by = {m.name: m for m in meters}
    assert by["Resize"].ran == 40 and by["VerticalFlip"].ran == 0  # p=1 always, p=0 never
    assert by["OneOf"].ran == by["GaussianBlur"].ran + by["MotionBlur"].ran and 0 < by["OneOf"].ran < 40  # p=0.7
    assert all(m.seconds > 0 for m in meters if m.name != "VerticalFlip")
    # the plain pipeline, and any built later from the same spec, keep albumentations' own classes
    assert type(pipeline.compose.transforms[0]) is A.Resize and type(A.from_dict(pipeline.spec).transforms[0]) is A.Resize


def test_profile_lists_every_transform_with_read_and_decode_beside_it(images: Path, branches: Path) -> None:
    found = profile_pipeline(ImageFolder(images, limit=6), load_pipeline(str(branches)), repeats=2)
    assert [t.name for t in found.transforms] == NAMES and found.images == 6 and found.same_output
    assert all(len(t.ms) == 2 for t in found.transforms) and len(found.augment_ms) == 2
    assert min(found.read_ms) > 0 and min(found.decode_ms) > 0 and not found.timed_whole
    assert [t.group for t in found.transforms] == [n in ("OneOf", "SomeOf") for n in NAMES]
    assert found.transforms[0].ran == 6 and found.transforms[-1].ran == 0


def test_heavy_lists_every_transform_of_its_file(images: Path) -> None:
    found = profile_pipeline(ImageFolder(images, limit=3), load_pipeline("heavy"), repeats=1)
    listed = [t.name for t in found.transforms]
    assert listed == ["Resize", "Affine", "RandomCrop", "HorizontalFlip", "ColorJitter", "GaussianBlur", "GaussNoise", "CLAHE"]


@pytest.mark.parametrize("level", ["medium", "heavy"])
def test_every_leaf_of_a_shipped_pipeline_is_timed_under_the_installed_library(images: Path, level: str) -> None:
    """Whichever library is installed (albumentations 2.0.8 or AlbumentationsX, issue #35: every transform 0.000
    ms there), each transform that ran has time, the sum is most of the whole, and the library is named."""
    found = profile_pipeline(ImageFolder(images, limit=4), load_pipeline(level), repeats=1)
    assert found.same_output and all(t.ms[0] > 0 for t in found.transforms if t.ran), found.transforms
    assert sum(t.ms[0] for t in found.transforms) >= profile_module.MEASURED_FLOOR * found.augment_ms[0]
    assert next(t for t in found.transforms if t.name == "Resize").ran == 4  # p=1: counted on every image
    assert instrument(load_pipeline(level)).library == augmentation_library()


def _meters_never_fed(pipeline, clock):  # the failure: meters built, the calls going around them
    metered = instrument(pipeline, clock)
    return Instrumented(load_pipeline(pipeline.source), metered.meters, metered.image, metered.library)


def test_meters_that_measured_nothing_are_refused_in_one_line_naming_the_library(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(profile_module, "instrument", _meters_never_fed)
    name, version = augmentation_library()
    with pytest.raises(InstrumentationError, match=rf"cannot instrument {name} {version}: its meters timed 0\.000 ms per image"):
        profile_pipeline(ImageFolder(images, limit=3), load_pipeline("light"), repeats=1)
    args = ("--inputs", str(images), "--pipeline", "light", "--limit", "3", "--repeats", "1", "--results", str(tmp_path))
    refused = invoke("profile", *args)
    assert refused.exit_code == 2 and f"cannot instrument {name} {version}" in refused.output
    assert len([line for line in refused.output.splitlines() if line.strip()]) == 1, refused.output


def test_a_transform_that_ran_untimed_is_refused(images: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Half an instrumentation (counted, not timed, as a new route in the library would leave it) is refused too."""

    class ResizeUntimed(Instrumented):
        def __call__(self, image, seed):
            out = super().__call__(image, seed)
            self.meters[0].seconds = 0.0  # Resize: applied to every image, its time lost
            return out

    def resize_untimed(pipeline, clock):
        metered = instrument(pipeline, clock)
        return ResizeUntimed(metered.pipeline, metered.meters, metered.image, metered.library)

    monkeypatch.setattr(profile_module, "instrument", resize_untimed)
    with pytest.raises(
        InstrumentationError, match=r"its meters timed nothing for Resize \(transforms\[0\]\), which applied to 3 images"
    ):
        profile_pipeline(ImageFolder(images, limit=3), load_pipeline("light"), repeats=1)


class Items:
    """A dataset of one's own: its __getitem__ is timed whole."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> np.ndarray:
        return np.full((80, 80, 3), 40 * i, np.uint8)


def test_a_dataset_of_ones_own_is_timed_whole() -> None:
    found = profile_pipeline(Items(), load_pipeline("light"), repeats=1)
    assert found.timed_whole and found.decode_ms == (0.0,) and found.read_ms[0] > 0 and found.images == 4


def jpeg(orientation: int = 1) -> np.ndarray:
    """A photo-like 120×160 JPEG, with an EXIF orientation tag when ``orientation`` is not 1."""
    small = np.random.default_rng(1).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    encoded = cv2.imencode(".jpg", cv2.resize(small, (160, 120), interpolation=cv2.INTER_CUBIC))[1].tobytes()
    if orientation != 1:
        tiff = b"MM" + struct.pack(">HI", 42, 8) + struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
        app1 = b"Exif\0\0" + tiff + struct.pack(">I", 0)
        encoded = encoded[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + encoded[2:]
    return np.frombuffer(encoded, np.uint8)


@pytest.mark.parametrize("name", ["pillow", "simplejpeg"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_each_decoder_turns_and_reduces_as_opencv_does(name: str, orientation: int) -> None:
    pytest.importorskip({"pillow": "PIL", "simplejpeg": "simplejpeg"}[name])
    data = jpeg(orientation)
    assert exif_orientation(data) == orientation
    for need in (None, (30, 30)):
        ours, theirs = decode_with("opencv", "x.jpg", data, need), decode_with(name, "x.jpg", data, need)
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype == np.uint8
        assert np.abs(ours.astype(int) - theirs).mean() < 1.0  # all three wrap libjpeg-turbo


def test_a_decoder_is_checked_when_the_folder_is_made(images: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="`decoder` 'turbo': unknown decoder; choose one of opencv, pillow, simplejpeg"):
        ImageFolder(images, decoder="turbo")
    monkeypatch.setattr(decoders.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'pdl\[simplejpeg\]'"):
        ImageFolder(images, decoder="simplejpeg")


def test_every_loader_makes_the_same_batches_with_a_chosen_decoder(images: Path) -> None:
    pytest.importorskip("simplejpeg")
    dataset = ImageFolder(images, limit=10, decoder="simplejpeg")
    spec = LoaderSpec(batch_size=4, seed=0, num_workers=2)
    made = {}
    for name in ("sequential", "process", "thread"):
        loader = make_loader(name, dataset, load_pipeline("light"), spec)
        try:
            made[name] = [(b.indices.copy(), b.images.copy()) for b in loader]
        finally:
            loader.close()
    for name in ("process", "thread"):
        assert all(
            np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(made["sequential"], made[name], strict=True)
        )


def test_the_command_prints_saves_and_report_shows_it_again(images: Path, branches: Path, tmp_path: Path) -> None:
    pytest.importorskip("simplejpeg")
    result = invoke(
        "profile", "--inputs", str(images), "--pipeline", str(branches), "--repeats", "1", "--limit", "5",
        "--decoders", "opencv,pillow,simplejpeg", "--results", str(tmp_path), "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert all(name in result.output for name in NAMES) and "sum of transforms" in result.output
    assert "within 10%" in result.output or "NOT within 10%" in result.output
    assert "pdl profile: decoders · 5 JPEGs" in result.output
    [saved] = tmp_path.glob("*-profile.json")
    data = json.loads(saved.read_text())
    assert data["kind"] == "profile" and data["complete"] and data["options"]["limit"] == 5
    assert [d["decoder"] for d in data["profiled"]["decoders"]] == ["opencv", "pillow", "simplejpeg"]
    rs = load(saved)
    assert rs.profiled is not None and [t.name for t in rs.profiled.transforms] == NAMES
    last = result.output.strip().splitlines()[-1]
    assert last == advice(rs.profiled)
    shown = invoke("report", str(saved))
    assert shown.exit_code == 0 and shown.output.strip().splitlines()[-1] == last
    md = invoke("report", str(saved), "--format", "markdown")
    assert md.exit_code == 0 and "**pdl profile: branches" in md.output and "| CLAHE" not in md.output
    assert "└ CLAHE" in md.output
    gated = invoke("report", str(saved), "--baseline", str(saved))
    assert gated.exit_code == 2 and "a `pdl profile` file" in gated.output


def test_one_line_errors(images: Path, tmp_path: Path) -> None:
    bad = invoke("profile", "--inputs", str(images), "--decoders", "opencv,turbo", "--results", str(tmp_path))
    assert (
        bad.exit_code == 2
        and bad.output.strip() == "error: --decoders 'turbo': unknown decoder; choose one of opencv, pillow, simplejpeg"
    )
    alone = invoke("profile", "--inputs", str(images), "--loader", "process", "--results", str(tmp_path))
    assert alone.exit_code == 2 and "give --decoders too" in alone.output
    run = invoke("run", "--inputs", str(images), "--decoder", "turbo", "--results", str(tmp_path))
    assert run.exit_code == 2 and "--decoder 'turbo': unknown decoder" in run.output
    assert not list(tmp_path.iterdir())


def test_run_records_the_decoder_and_profile_races_a_loader_per_decoder(images: Path, tmp_path: Path) -> None:
    pytest.importorskip("simplejpeg")
    args = ("--inputs", str(images), "--repeats", "1", "--limit", "6", "--batch-size", "3", "--quiet")
    ran = invoke("run", *args, "--loaders", "sequential,thread", "--decoder", "simplejpeg", "--results", str(tmp_path / "run"))
    assert ran.exit_code == 0, ran.output
    [saved] = (tmp_path / "run").glob("*-run.json")
    assert [p.decoder for p in load(saved).points] == ["simplejpeg", "simplejpeg"]
    raced = invoke(
        "profile", *args, "--decoders", "opencv,simplejpeg", "--loader", "sequential", "--results", str(tmp_path / "p")
    )
    assert raced.exit_code == 0, raced.output
    [saved] = (tmp_path / "p").glob("*-profile.json")
    points = load(saved).points
    assert [p.decoder for p in points] == ["opencv", "simplejpeg"] and points[1].baseline_wall_s == points[0].wall_s


def cost(name: str, p: float, ms: float) -> TransformCost:
    return TransformCost(name, "transforms[0]", 0, p, 10, (ms,))


def profiled(decode: float, speeds: tuple[DecoderSpeed, ...] = ()) -> Profiled:
    transforms = (cost("Resize", 1.0, 0.5), cost("CLAHE", 0.5, 0.82), cost("GaussNoise", 0.5, 0.68))
    return Profiled("heavy", 20, 1, (0.1,), (decode,), (2.0,), transforms, True, decoders=speeds)


def test_the_last_line_names_the_biggest_lever() -> None:
    assert advice(profiled(0.3)).startswith("CLAHE is 41% of heavy's augment time at p=0.5 (0.82 of 2.00 ms per image)")
    faster = (DecoderSpeed("opencv", 9, 100.0, rates=(100.0, 98.0)), DecoderSpeed("simplejpeg", 9, 130.0, rates=(131.0, 129.0)))
    assert advice(profiled(1.5, faster)).endswith(
        "--decoder simplejpeg decodes these JPEGs 1.30× as fast as OpenCV (faster in every round)"
    )
    raced = [point("process", 2, [1.0, 1.0, 1.0], [1.0 / 0.98, 1.0 / 1.01, 1.0 / 1.02], decoder="simplejpeg")]
    assert advice(profiled(1.5, faster), raced).endswith(
        "(faster in every round); in process it made 1.01× (min–max 0.98–1.02) the images/s with OpenCV: no gain it can show"
    )
    mixed = (faster[0], DecoderSpeed("simplejpeg", 9, 130.0, rates=(131.0, 97.0)))  # not faster in every round
    assert advice(profiled(1.5, mixed)).endswith(
        "no decoder measured beat OpenCV by 5% in every round; a smaller first resize would let --reduce-decode help"
    )


def test_the_sum_note_says_which_side_of_the_whole_the_transforms_are_and_why() -> None:
    from pdl.report.profiling import sum_note

    below = sum_note(1.44, 1.5)
    assert below.startswith("sum of transforms 1.440 ms per image, 4.0% below the pipeline timed whole (1.500 ms; within 10%)")
    assert below.endswith("albumentations' own work between transforms (its checks and random state per image) and the timers")
    above = sum_note(1.8, 1.5)
    assert "20.0% above the pipeline timed whole (1.500 ms; NOT within 10%: re-run with more --repeats)" in above
    assert above.endswith("timing noise (the instrumented and the plain pipeline are timed apart)")
    far_below = sum_note(0.5, 1.5)  # AlbumentationsX on small images: its own work between transforms is large
    assert (
        "66.7% below the pipeline timed whole (1.500 ms; NOT within 10%: re-run with more --repeats; a gap that stays is the library's own work (AlbumentationsX's is large))"
        in far_below
    )
