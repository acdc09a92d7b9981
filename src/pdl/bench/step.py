"""A simulated training step: what the consumer does with each batch before it asks for the next.

``--step-ms 40`` spends 40 ms per batch, ``--step-ms 0.5/img`` 0.5 ms per image of the batch. A ``gpu`` step
waits without using the CPU (a host waiting on an accelerator); a ``cpu`` step spins (host-side work). It is
an argument of the measurement, not of the loaders: the loader does not know the consumer is slow.

The clock and the sleep are injected, so tests run a step in no time with exact numbers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from ..errors import ConfigError

StepKind = Literal["gpu", "cpu"]
STEP_KINDS: tuple[str, ...] = get_args(StepKind)
Clock = Callable[[], float]
Sleep = Callable[[float], None]

_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:ms)?\s*(/\s*(?:img|image))?\s*$")


@dataclass(frozen=True)
class Step:
    """``ms`` per batch, or per image when ``per_image``; ``kind`` gpu waits, cpu spins."""

    ms: float
    per_image: bool = False
    kind: StepKind = "gpu"

    def __post_init__(self) -> None:
        if not self.ms > 0 or self.ms == float("inf"):
            raise ConfigError(f"--step-ms {self.ms:g}: give a positive number of milliseconds, e.g. 40 or 0.5/img")
        if self.kind not in STEP_KINDS:
            raise ConfigError(f"--step-kind '{self.kind}': choose one of {', '.join(STEP_KINDS)}")

    def seconds(self, images: int) -> float:
        """The step for a batch of ``images`` images."""
        return self.ms * (images if self.per_image else 1) / 1e3

    def batch_ms(self, batch_size: int) -> float:
        """The step for a full batch, in ms: what bounds the throughput (batch / this)."""
        return self.ms * (batch_size if self.per_image else 1)

    def __str__(self) -> str:
        return f"{self.ms:g} ms{'/img' if self.per_image else ''} {self.kind}"


def parse_step(text: str | None, kind: str = "gpu") -> Step | None:
    """``--step-ms`` as given (``40``, ``40ms``, ``0.5/img``) with ``--step-kind``; None without one."""
    if text is None:
        return None
    match = _PATTERN.match(text)
    if match is None or not float(match.group(1)) > 0:
        raise ConfigError(
            f"--step-ms '{text}': give a positive number of milliseconds per batch (e.g. 40) or per image (e.g. 0.5/img)"
        )
    if kind not in STEP_KINDS:
        raise ConfigError(f"--step-kind '{kind}': choose one of {', '.join(STEP_KINDS)}")
    return Step(float(match.group(1)), per_image=match.group(2) is not None, kind=kind)  # type: ignore[arg-type]


def spin(seconds: float, clock: Clock = time.perf_counter) -> None:
    """Busy-wait: the CPU stays at work for ``seconds``, as host-side training work does."""
    end = clock() + seconds
    while clock() < end:
        pass


def take_step(step: Step, images: int, clock: Clock = time.perf_counter, sleep: Sleep = time.sleep) -> None:
    """The consumer's work on one batch of ``images`` images: waits (gpu) or spins (cpu)."""
    seconds = step.seconds(images)
    if step.kind == "gpu":
        sleep(seconds)
    else:
        spin(seconds, clock)
