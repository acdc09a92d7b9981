"""Which augmentation library pdl runs with: albumentations 2.0.8 or AlbumentationsX, either one, never both;
with neither, one line naming both install commands (simulated here by blocking the import, not by uninstalling)."""

from __future__ import annotations

import sys

import albumentations
import pytest

from pdl import _augment
from pdl._augment import DISTRIBUTIONS, augmentation_library
from pdl.data.pipeline import load_pipeline
from pdl.errors import ConfigError, MissingDependencyError


def test_the_library_named_is_the_one_that_imports() -> None:
    name, version = augmentation_library()
    assert name in DISTRIBUTIONS and version == albumentations.__version__


def test_with_neither_installed_loading_a_pipeline_says_both_install_commands_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "albumentations", None)  # `import albumentations` now fails as if absent
    with pytest.raises(MissingDependencyError) as caught:
        load_pipeline("light")
    message = str(caught.value)
    assert "\n" not in message and "neither albumentations nor albumentationsx is installed" in message
    assert 'pip install -e ".[albumentations]"' in message and 'pip install -e ".[albumentationsx]"' in message
    with pytest.raises(MissingDependencyError):
        augmentation_library()


def test_both_installed_is_named_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_augment, "_installed", lambda name: {"albumentations": "2.0.8", "albumentationsx": "2.5.1"}[name])
    with pytest.raises(
        ConfigError, match=r"albumentations 2\.0\.8 and albumentationsx 2\.5\.1 are both installed .*pip uninstall"
    ):
        augmentation_library()
