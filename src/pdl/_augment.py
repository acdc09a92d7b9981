"""Which augmentation library provides the package `albumentations`: albumentations or AlbumentationsX.

Both distributions install the same import package, so pdl requires neither (pip would write one over the other);
it is installed with the extra of the user's choice (``pdl[albumentations]``, ``pdl[albumentationsx]``) or beside
the one already there. ``require()`` is the one check that it is there, made before pdl first imports it.
"""

from __future__ import annotations

from importlib import metadata
from importlib.util import find_spec

from .errors import ConfigError, MissingDependencyError

PACKAGE = "albumentations"  # the import name both distributions install
DISTRIBUTIONS = ("albumentations", "albumentationsx")  # the MIT line (2.0.8, its last release); AGPL-3.0 or commercial
INSTALL = (
    'pip install -e ".[albumentations]" (albumentations 2.0.8, MIT) or pip install -e ".[albumentationsx]" '
    "(AlbumentationsX, AGPL-3.0 or commercial; brings torch)"
)


def require() -> None:
    """Raise one line naming both install commands when no distribution provides `albumentations`."""
    try:
        missing = find_spec(PACKAGE) is None
    except (ImportError, ValueError):  # a broken or blocked entry in sys.modules
        missing = True
    if missing:
        raise MissingDependencyError(
            f"pdl needs an augmentation library and neither albumentations nor albumentationsx is installed; install one: {INSTALL}"
        )


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def augmentation_library() -> tuple[str, str]:
    """(distribution, version) of the library behind ``import albumentations``: ("albumentations", "2.0.8") or
    ("albumentationsx", "2.5.1"). Read from the installed distributions' metadata, without importing it."""
    require()
    found = [(name, version) for name in DISTRIBUTIONS if (version := _installed(name)) is not None]
    if len(found) == 2:
        both = " and ".join(f"{n} {v}" for n, v in found)
        raise ConfigError(
            f"{both} are both installed and write the same package `albumentations`, so which one runs is unknown; "
            "keep one: pip uninstall -y albumentations albumentationsx, then pip install the one you use"
        )
    if found:
        return found[0]
    import albumentations  # importable without a distribution's metadata (a source tree on sys.path)

    return PACKAGE, str(getattr(albumentations, "__version__", "unknown"))
