"""The bound on a wait when no `timeout` was given: no loader waits for ever, and none gives up on slow work.

Without `timeout`, a loader that waits for its workers and sees no progress (no chunk, batch or epoch finished:
each loader counts its own unit) for ``bound_s`` raises ``NoProgressError`` (exit code 6), naming what it waited
for. The bound is derived from what was measured: ``factor`` times the longest unit seen so far, and at least
``floor_s``, so a pipeline whose chunks take 20 s is given 200 s, and a hang on the very first chunk still ends
after a minute. With `timeout`, the loader's own rule holds, as before (``LoaderTimeoutError``). Tests give a
loader a small ``Watchdog(floor_s=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import NoProgressError

FLOOR_S = 60.0  # no hang waits longer than this before the work it waits on was ever seen to finish
FACTOR = 10.0  # units as slow as the slowest seen, one after another, before a wait counts as a hang


@dataclass
class Watchdog:
    """What a loader measured of its unit of progress, and the wait that makes a hang of it."""

    floor_s: float = FLOOR_S
    factor: float = FACTOR
    longest_s: float = 0.0  # the longest unit seen

    def saw(self, seconds: float) -> None:
        """A unit of work finished in ``seconds``."""
        self.longest_s = max(self.longest_s, seconds)

    @property
    def bound_s(self) -> float:
        return max(self.floor_s, self.factor * self.longest_s)

    def expired(self, loader: str, waiting_for: str, unit: str, stalled: str = "") -> NoProgressError:
        """The error, one line: 'the process loader: no chunk finished for 60 s while waiting for batch 3 of epoch
        0 (the watchdog: 10 × the longest chunk seen, at least 60 s); …'. ``stalled``: the workers named stalled."""
        why = f"{stalled}: " if stalled else "a worker or the pipeline hangs (a transform or a read that never returns?): "
        return NoProgressError(
            f"{loader}: no {unit} finished for {round(self.bound_s, 1):g} s while waiting for {waiting_for} (the watchdog: "
            f"{self.factor:g} × the longest {unit} seen, at least {self.floor_s:g} s); {why}"
            "find what blocks it, or set `timeout` to wait longer"
        )
