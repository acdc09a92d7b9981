"""Pipelines: shipped levels, both YAML formats, safe loading, and errors that name the file and entry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pdl import load_pipeline
from pdl.data.pipeline import LEVELS, shipped_names
from pdl.errors import ConfigError

IMAGE = np.random.default_rng(0).integers(0, 255, (375, 500, 3), dtype=np.uint8)


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", LEVELS)
def test_shipped_levels_end_at_a_fixed_size(name: str) -> None:
    pipe = load_pipeline(name)
    assert pipe.name == name and pipe.description
    assert pipe.output_shape == (200, 200, 3)
    assert pipe(IMAGE, seed=1).shape == (200, 200, 3)


def test_levels_are_listed_in_order_of_complexity() -> None:
    assert shipped_names()[:4] == ["light", "medium", "heavy", "extreme"]
    sizes = [len(load_pipeline(n).spec["transform"]["transforms"]) for n in LEVELS]
    assert sizes == sorted(sizes) and len(set(sizes)) == 4
    assert load_pipeline("extreme").output_dtype == "float32"  # Normalize


def test_same_seed_same_output_and_seeds_differ() -> None:
    pipe = load_pipeline("heavy")
    a, b, c = pipe(IMAGE, 7), pipe(IMAGE, 7), pipe(IMAGE, 8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_friendly_yaml_with_bare_names_and_nested_compose(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
name: mine
description: test
transforms:
  - Resize: {height: 64, width: 64}
  - HorizontalFlip
  - OneOf:
      p: 1.0
      transforms:
        - Blur: {blur_limit: 3}
        - MedianBlur: {blur_limit: 3}
""",
    )
    pipe = load_pipeline(str(path))
    assert (pipe.name, pipe.output_shape, pipe.source) == ("mine", (64, 64, 3), str(path))


def test_albumentations_serialized_yaml_loads_and_matches_the_friendly_form(tmp_path: Path) -> None:
    import albumentations as A

    compose = A.Compose([A.Resize(256, 256), A.RandomCrop(200, 200)])
    A.save(compose, str(tmp_path / "ser.yaml"), data_format="yaml")
    serialized, friendly = load_pipeline(str(tmp_path / "ser.yaml")), load_pipeline("light")
    assert serialized.output_shape == (200, 200, 3)
    assert np.array_equal(serialized(IMAGE, 3), friendly(IMAGE, 3))


def test_unknown_transform_names_file_entry_and_close_matches(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\ntransforms:\n  - Resize: {height: 8, width: 8}\n  - RandomCrp: {height: 4, width: 4}\n")
    with pytest.raises(ConfigError) as info:
        load_pipeline(str(path))
    assert str(info.value).startswith(f"{path}: transforms[1]: unknown transform 'RandomCrp'; did you mean RandomCrop")


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\ntransforms:\n  - Blur\n   oops: here: 1\n")
    with pytest.raises(ConfigError, match=rf"^{path}:4:\d+: YAML syntax error: mapping values are not allowed"):
        load_pipeline(str(path))


def test_wrong_arguments_give_albumentations_message_with_file_and_entry(tmp_path: Path) -> None:
    path = write(tmp_path, "transforms:\n  - Resize: {height: -3, width: 8}\n")
    with pytest.raises(ConfigError) as info:
        load_pipeline(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: transforms[0] (Resize): ") and "height" in message
    assert "\n" not in message


def test_varying_output_size_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = write(tmp_path, "transforms:\n  - HorizontalFlip\n")
    with pytest.raises(ConfigError, match="output size varies.*end it with a fixed-size transform"):
        load_pipeline(str(path))


@pytest.mark.parametrize(
    "text",
    [
        "transforms:\n  - !!python/object/apply:os.system ['echo pwned']\n",
        "transforms:\n  - os.system: {}\n",
        "transforms:\n  - Lambda: {}\n",
        "transforms:\n  - __import__: {}\n",
        "transform: {__class_fullname__: subprocess.Popen, args: ['true']}\n",
    ],
)
def test_configs_cannot_import_or_run_code(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError):
        load_pipeline(str(write(tmp_path, text)))


def test_unknown_pipeline_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match="`pipeline` 'hevy'.*did you mean heavy.*shipped: light, medium, heavy, extreme"):
        load_pipeline("hevy")
    with pytest.raises(ConfigError, match="pipeline file 'no/such.yaml' does not exist"):
        load_pipeline("no/such.yaml")


def test_pipeline_pickles_without_its_albumentations_objects() -> None:
    import copy
    import pickle

    pipe = load_pipeline("medium")
    pipe(IMAGE, 0)  # builds the Compose
    clone = pickle.loads(pickle.dumps(pipe))
    assert not clone.built and np.array_equal(clone(IMAGE, 5), pipe(IMAGE, 5))
    assert copy.copy(pipe).compose is not pipe.compose


@pytest.mark.parametrize("name", LEVELS)
def test_shipped_levels_need_their_first_resize(name: str) -> None:
    import pickle

    pipe = load_pipeline(name)
    assert pipe.min_input_size == (256, 256)
    assert pickle.loads(pickle.dumps(pipe)).min_input_size == (256, 256)


@pytest.mark.parametrize(
    ("first", "expected"),
    [
        ("Resize: {height: 96, width: 128}", (96, 128)),
        ("SmallestMaxSize: {max_size: 100}", (100, 100)),
        ("LongestMaxSize: {max_size: 100}", None),  # its target depends on the aspect ratio
        ("Resize: {height: 96, width: 128, p: 0.5}", None),  # not always applied
        ("RandomCrop: {height: 96, width: 96}", None),
        ("HorizontalFlip", None),
    ],
)
def test_min_input_size_counts_only_a_deterministic_first_resize(tmp_path: Path, first: str, expected: object) -> None:
    path = write(tmp_path, f"transforms:\n  - {first}\n  - Resize: {{height: 64, width: 64}}\n")
    assert load_pipeline(str(path)).min_input_size == expected
