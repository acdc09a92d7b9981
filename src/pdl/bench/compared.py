"""What `pdl compare` keeps (a results file of kind "compare"): both sides, every pair measured, and each measure's
paired change with its interval and verdict. Pure data; ``records.ResultSet.compared`` holds one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..machine.contention import Interference


@dataclass(frozen=True)
class SideInfo:
    """One side of a comparison: what it ran and in which environment."""

    label: str
    """"base" or "head"."""
    python: str
    """The interpreter the side ran in (its environment: another venv, another checkout)."""
    pdl: str
    """The side's pdl version."""
    augmentation: str
    """The side's augmentation library and its version: "albumentations 2.0.8", "albumentationsx 2.5.0"."""
    options: dict[str, Any]
    """The side's run options (``Experiment`` fields), as sent to it."""
    loaders: tuple[str, ...]
    """Its loaders, the sequential baseline first; the two sides' are matched by position."""
    pipeline: str
    """Its pipeline's name (a shipped level or a YAML path)."""
    images: int
    """Images per epoch."""
    digest: str = ""
    """Of the warm-up epoch's batches: equal digests, bit-identical work on both sides."""
    setup_s: float = 0.0
    """Starting the process, loading the pipeline, starting and warming the loaders."""


@dataclass(frozen=True)
class Pair:
    """One round of each side, back to back, in ``order``; dropped whole when either was disturbed or failed."""

    order: str
    """"base,head" or "head,base": which side ran first."""
    base_wall_s: tuple[float, ...]
    """The base side's epoch per loader (its loaders' order); empty when it failed."""
    head_wall_s: tuple[float, ...]
    """The head side's epoch per loader; empty when it failed."""
    base_images: int
    """Images in the base side's epoch."""
    head_images: int
    """Images in the head side's epoch."""
    kept: bool
    """False: dropped (``why``) and measured again."""
    why: str = ""
    """Why it was dropped: what disturbed it, or which side failed and how."""
    interference: Interference | None = None
    """What else competed for the CPUs during the pair; None where it cannot be read."""
    seconds: float = 0.0
    """Wall time of the pair, both rounds."""


@dataclass(frozen=True)
class Measured:
    """One measure's paired change head/base over the kept pairs, and what it says against its threshold."""

    measure: str
    """"images/s" or "speedup"."""
    loader: str
    """The head side's loader ("base loader → head loader" where the sides differ)."""
    base: float
    """The base side's median over the kept pairs (images/s, or speedup ×)."""
    head: float
    """The head side's median over the kept pairs."""
    change: float
    """The Hodges–Lehmann estimate of head/base − 1 over the pairs' log ratios (−0.05: head 5% slower)."""
    low: float | None
    """The interval's lower end (head/base − 1); None with too few pairs for one."""
    high: float | None
    """The interval's upper end."""
    threshold: float
    """The smallest slowdown that counts (--max-slowdown, --max-speedup-drop), as a share."""
    status: str
    """"regressed", "no regression", "improved", or "inconclusive" (undecided when the budget ended)."""
    pairs: int
    """Kept pairs the change is drawn from."""
    more_pairs: int | None = None
    """Inconclusive: about how many pairs in all would decide it at this spread; None when none would (the change
    sits at the threshold)."""


@dataclass(frozen=True)
class Compared:
    """A whole comparison: the sides, every pair in the order measured, the verdicts, and how it ended."""

    base: SideInfo
    """The base side."""
    head: SideInfo
    """The head side."""
    pairs: tuple[Pair, ...]
    """Every pair measured, dropped ones included, in order."""
    measured: tuple[Measured, ...]
    """One per measure: each loader's images/s, each parallel loader's speedup."""
    confidence: float
    """Of the intervals (0.95)."""
    stopped: str
    """Why the pairs stopped: "decided" (every measure), "regressed" (one did: the rest cannot change that),
    "max-time", "max-pairs"; "running" in a file saved while measuring."""
    seconds: float
    """The whole command, start-ups included."""
    max_slowdown: float = 0.05
    """The threshold of every images/s measure (--max-slowdown), as a share."""
    max_speedup_drop: float = 0.10
    """The threshold of every speedup measure (--max-speedup-drop), as a share."""
