"""The regression gate: match points by configuration, compare their speedups, say whether a change is real.

A point regresses only when it is slower by more than the threshold AND its rounds say so (the two ranges
of per-round speedups do not overlap, with at least MIN_ROUNDS rounds on each side) — asv's `continuous`
likewise wants both a factor and significance. Anything beyond the threshold without that evidence is
"inconclusive": never a silent pass, never a flaky fail.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ConfigError, ResultsError
from .records import Point, ResultSet

MIN_ROUNDS = 3
KEY_FIELDS = ("pipeline", "loader", "workers", "batch_size", "augment_in")
EXIT_OK, EXIT_REGRESSION, EXIT_INCONCLUSIVE = 0, 1, 3
Status = Literal["ok", "improved", "regressed", "inconclusive", "missing", "new"]
Key = tuple[str, str, int, int, str]  # KEY_FIELDS of a point: the configuration points are matched on


@dataclass(frozen=True)
class Verdict:
    key: Key
    status: Status
    baseline: float | None  # the baseline's speedup; None for a new point
    current: float | None  # the current speedup; None for a missing point
    reason: str = ""

    @property
    def change(self) -> float | None:
        if self.baseline is None or self.current is None or self.baseline == 0:
            return None
        return self.current / self.baseline - 1

    def to_dict(self) -> dict[str, Any]:
        """The JSON export's row: the configuration's fields, then the verdict."""
        return {
            **dict(zip(KEY_FIELDS, self.key, strict=True)),
            "status": self.status,
            "baseline": self.baseline,
            "current": self.current,
            "change": self.change,
            "reason": self.reason,
        }


def _key(p: Point) -> Key:
    return (p.pipeline, p.loader, p.workers, p.batch_size, p.augment_in)


def judge(base_rounds: Sequence[float], cur_rounds: Sequence[float], threshold: float) -> tuple[Status, str]:
    b, c = statistics.median(base_rounds), statistics.median(cur_rounds)
    change = c / b - 1
    if abs(change) <= threshold:
        return "ok", f"within ±{threshold:.0%}"
    if min(len(base_rounds), len(cur_rounds)) < MIN_ROUNDS:
        return "inconclusive", f"too few rounds to tell (need {MIN_ROUNDS} on each side)"
    separated = max(cur_rounds) < min(base_rounds) if change < 0 else min(cur_rounds) > max(base_rounds)
    if not separated:
        return "inconclusive", "rounds overlap: too noisy to tell; re-run with more --repeats"
    return ("regressed" if change < 0 else "improved"), f"{change:+.0%}, rounds do not overlap"


def compare(current: ResultSet, baseline: ResultSet, threshold: float, allow_other_machine: bool = False) -> list[Verdict]:
    for rs, which in ((current, "current"), (baseline, "--baseline")):
        if rs.kind == "decode":  # its points are full vs reduced decoding of one loader, not loaders vs sequential
            raise ConfigError(
                f"the {which} results are a `pdl decode` file: the gate compares run, sweep and tune files; show it "
                "with `pdl report` alone"
            )
    check_same_machine(current, baseline, allow_other_machine)
    cur = {_key(p): p for p in current.points if p.loader != "sequential"}
    base = {_key(p): p for p in baseline.points if p.loader != "sequential"}
    verdicts = []
    for key, b in base.items():
        c = cur.get(key)
        if c is None:
            verdicts.append(Verdict(key, "missing", b.speedup, None, "not measured in the current results"))
            continue
        status, reason = judge(b.speedup_rounds, c.speedup_rounds, threshold)
        verdicts.append(Verdict(key, status, b.speedup, c.speedup, reason))
    verdicts += [Verdict(k, "new", None, p.speedup, "not in the baseline") for k, p in cur.items() if k not in base]
    return verdicts


def check_same_machine(current: ResultSet, baseline: ResultSet, allow: bool) -> None:
    a, b = current.machine.cpu, baseline.machine.cpu
    if allow or (a.usable, a.model) == (b.usable, b.model):
        return
    raise ResultsError(
        f"the baseline was measured on another machine ({b.model}, {b.usable} usable cores; now "
        f"{a.model}, {a.usable}): speedups depend on the cores; pass --allow-other-machine to compare anyway"
    )


def exit_code(verdicts: list[Verdict]) -> int:
    statuses = {v.status for v in verdicts}
    if "regressed" in statuses:
        return EXIT_REGRESSION
    if statuses & {"inconclusive", "missing"} or not statuses - {"new"}:
        return EXIT_INCONCLUSIVE
    return EXIT_OK


def parse_share(option: str, text: str, hint: str) -> float:
    """A share given as ``5%`` or ``0.05``, strictly between 0 and 1; else one line: ``option 'text': hint``."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < 1:
        raise ConfigError(f"{option} '{text}': {hint}")
    return value


def parse_threshold(text: str) -> float:
    return parse_share("--max-slowdown", text, "give a percentage between 0 and 100, e.g. 10%")
