"""A folder of results files as a history: each configuration's throughput run after run, and the first run
where a change became significant. What a team gates against over weeks, rather than one baseline file.

Pure: files are loaded by the caller (``bench.files.load``); this orders them, checks they can be compared, and
finds the changes with the gate's own rule (``gate.judge``: beyond the threshold, with a rank test's evidence).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..bench.records import ResultSet
from ..errors import ResultsError
from ..loaders import BASELINE
from ..machine.contention import busy_summary
from ..stats.rounds import GATE_ALPHA, median, rounds_needed
from .gate import NOT_COMPARED, Key, Series, calibrated, judge, throughput


@dataclass(frozen=True)
class Run:
    path: Path
    results: ResultSet

    @property
    def label(self) -> str:
        """'2026-12-01T11:40 · 3ec1f30 (main)', or the file's name outside a repository."""
        when = self.results.created[:16]
        src = self.results.source
        if src is None:
            return f"{when} · {self.path.name}"
        return f"{when} · {src.commit[:7]}{'+' if src.dirty else ''} ({src.branch})"


@dataclass(frozen=True)
class Change:
    run: int  # index into the history's runs
    change: float  # against the run before it that the trend was at
    reason: str


@dataclass(frozen=True)
class Trend:
    """One configuration's images/s over the runs (None where a run did not measure it), and where it changed."""

    key: Key
    values: tuple[float | None, ...]
    lows: tuple[float | None, ...]
    highs: tuple[float | None, ...]
    changes: tuple[Change, ...]
    busy: tuple[str | None, ...] = ()  # per run: what made it too busy to judge (drawn, never marks a change)

    @property
    def label(self) -> str:
        pipeline, loader, workers, batch, where = self.key
        w = "" if loader == BASELINE else f" · {workers} w"
        return f"{pipeline} · {loader}{w} · b{batch}" + (" · main" if where == "main" else "")


@dataclass(frozen=True)
class History:
    runs: tuple[Run, ...]
    trends: tuple[Trend, ...]
    corrected: bool  # values are drift-corrected (every run has calibration rounds of the same workload)


def order(loaded: Sequence[tuple[Path, ResultSet]], where: str) -> tuple[Run, ...]:
    """The runs by the time they were made; one kind only, else one line naming a file of each kind."""
    if not loaded:
        raise ResultsError(
            f"--history '{where}': no pdl results files (*.json) there; point it at a folder that pdl saved results into"
        )
    kinds: dict[str, Path] = {}
    for path, rs in loaded:
        kinds.setdefault(rs.kind, path)
    if len(kinds) > 1:
        named = "; ".join(f"{kind}: {path.name}" for kind, path in kinds.items())
        raise ResultsError(
            f"--history '{where}': results of different kinds cannot be compared ({named}); keep one kind per folder"
        )
    for kind in NOT_COMPARED:
        if kind in kinds:
            raise ResultsError(
                f"--history '{where}': `pdl {kind}` files measure one thing once, not loaders over time; show each with `pdl report`"
            )
    return tuple(Run(path, rs) for path, rs in sorted(loaded, key=lambda pr: (pr[1].created, pr[0].name)))


def history(runs: Sequence[Run], threshold: float) -> History:
    series = [throughput(run.results) for run in runs]
    corrected = calibrated([run.results for run in runs], series)
    keys = list(dict.fromkeys(k for ser in series for k in ser))
    reference = _reference(series) if corrected else 1.0
    trends = tuple(_trend(key, [ser.get(key) for ser in series], threshold, corrected, reference) for key in keys)
    return History(tuple(runs), trends, corrected)


def _reference(series: Sequence[dict[Key, Series]]) -> float:
    """The first run's median calibration seconds: corrected values are shown as images/s at that machine speed."""
    return median([c for s in series[0].values() for c in s.calibration_s])


def _trend(key: Key, per_run: Sequence[Series | None], threshold: float, corrected: bool, reference: float) -> Trend:
    kept = [None if s is None else s.kept() for s in per_run]
    rounds = [None if s is None else tuple(v / reference for v in s.corrected()) if corrected else s.rates for s in kept]
    need = rounds_needed(GATE_ALPHA)
    busy = tuple(
        busy_summary(s.busy(), len(s.rates)) if s is not None and s.busy() and len(k.rates if k else ()) < need else None
        for s, k in zip(per_run, kept, strict=True)
    )
    # a busy run is drawn from all its rounds (marked), but never judged
    shown = [
        r if r or s is None or busy[i] is None else tuple(v / reference for v in s.corrected()) if corrected else s.rates
        for i, (r, s) in enumerate(zip(rounds, per_run, strict=True))
    ]
    changes = []
    # the run the trend is at (where it last changed): never a busy one
    at = next((i for i, r in enumerate(rounds) if r and busy[i] is None), None)
    for i, r in enumerate(rounds):
        if at is None or i <= at or not r or busy[i] is not None:
            continue
        status, change, reason = judge(rounds[at] or (), r, threshold)
        if status in ("regressed", "improved"):
            changes.append(Change(i, change, reason))
            at = i
    return Trend(
        key,
        tuple(None if not r else median(r) for r in shown),
        tuple(None if not r else min(r) for r in shown),
        tuple(None if not r else max(r) for r in shown),
        tuple(changes),
        busy,
    )
