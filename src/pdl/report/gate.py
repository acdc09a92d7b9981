"""The regression gate: match points by configuration; compare their throughput (images/s, the sequential
loop's too) and their speedup; say whether a change is real.

Throughput is what a user's regressions change (a slower transform, a library upgrade, a dataset class that
reads twice): the speedup, parallel ÷ sequential, does not see them, since both sides slow alike. Raw images/s
drifts with the machine, so the gate compares images/s × the calibration workload's median seconds in the same run
(``bench/calibrate.py``): drift-corrected throughput.

Each measure has its threshold (``Limits``): 10% of images/s by default — the A/A spread of drift-corrected
throughput here was 3–5% —, 25% of speedup, whose rounds are noisier on few cores (parallel work contends)
and which throughput already watches: a loader that loses parallelism loses images/s too.

A change is "regressed" only when it is beyond its threshold AND its rounds say so: a one-sided Mann–Whitney U
test at p ≤ ``GATE_ALPHA`` (asv's ``continuous`` likewise wants a factor and significance), which needs at least
``rounds_needed(GATE_ALPHA)`` rounds a side. Beyond the threshold without that evidence is "inconclusive":
never a silent pass, never a flaky fail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..bench.point import Point
from ..bench.records import ResultSet
from ..errors import ConfigError, ResultsError
from ..loaders import BASELINE
from ..machine.contention import Interference, busy_summary, busy_word, throttle_summary
from ..stats.rounds import GATE_ALPHA, evidence, median, parse_share, rounds_needed

KEY_FIELDS = ("pipeline", "loader", "workers", "batch_size", "augment_in")


EXIT_OK, EXIT_REGRESSION, EXIT_INCONCLUSIVE = 0, 1, 3


Status = Literal["ok", "improved", "regressed", "inconclusive", "missing", "new"]


Measure = Literal["images/s", "speedup"]


Key = tuple[str, str, int, int, str]  # KEY_FIELDS of a point: the configuration points are matched on


@dataclass(frozen=True)
class Verdict:
    key: Key
    measure: Measure
    status: Status
    baseline: float | None  # the baseline's median (speedup, or images/s as measured); None for a new point
    current: float | None  # the current median; None for a missing point
    change: float | None = None  # current / baseline - 1; for images/s, of the drift-corrected throughput
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON export's row: the configuration's fields, then the verdict."""
        return {
            **dict(zip(KEY_FIELDS, self.key, strict=True)),
            "measure": self.measure,
            "status": self.status,
            "baseline": self.baseline,
            "current": self.current,
            "change": self.change,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Limits:
    """The smallest change that counts, per measure (shares: 0.10 is 10%)."""

    images: float = 0.10
    speedup: float = 0.25

    def describe(self) -> str:
        return f"max slowdown {self.images:.0%} in images/s, {self.speedup:.0%} in speedup"


@dataclass(frozen=True)
class Gate:
    """The verdicts, and what the reader must know about how they were reached."""

    verdicts: tuple[Verdict, ...]
    notes: tuple[str, ...] = ()
    limits: Limits = Limits()

    @property
    def exit_code(self) -> int:
        return exit_code(list(self.verdicts))


@dataclass(frozen=True)
class Series:
    """A configuration's throughput rounds, with the calibration's seconds in each round when measured, and what
    else competed in each (empty: not measured, an older file)."""

    rates: tuple[float, ...]
    calibration_s: tuple[float, ...]
    interference: tuple[Interference, ...] = ()

    def kept(self) -> Series:
        """The rounds nothing else disturbed: the only ones a verdict may use."""
        if len(self.interference) != len(self.rates):
            return self
        keep = [not i.disturbed for i in self.interference]
        calibration = tuple(c for c, k in zip(self.calibration_s, keep, strict=True) if k) if self.calibrated else ()
        return Series(
            tuple(r for r, k in zip(self.rates, keep, strict=True) if k),
            calibration,
            tuple(i for i, k in zip(self.interference, keep, strict=True) if k),
        )

    def busy(self) -> tuple[Interference, ...]:
        return tuple(i for i in self.interference if i.disturbed) if len(self.interference) == len(self.rates) else ()

    def corrected(self) -> tuple[float, ...]:
        """Each round's images/s × the run's median calibration seconds: images per calibration unit, the drift
        between runs cancelled. The run's median, not each round's own: a single calibration is a short sample,
        and its noise, added to every round, blurred the rank test (on real photos, 3 of 20 true 1.25× regressions
        became inconclusive with per-round correction, none with the run's median)."""
        if not self.rates:
            return ()
        factor = median(self.calibration_s)
        return tuple(r * factor for r in self.rates)

    @property
    def calibrated(self) -> bool:
        return len(self.calibration_s) == len(self.rates) > 0


def against_raw(
    base: Series, current: Series, change: float, threshold: float, status: Status, reason: str
) -> tuple[Status, str]:
    """A drift-corrected change whose raw images/s moved the other way by more than half the threshold is the
    calibration's, not the code's: the correction alone made it (a baseline whose calibration median was 92 ms
    against 75 ms in every other run turned raw +10% into a "regression" of -12%, p = 0.004). Inconclusive,
    saying so. A raw change near zero with a corrected one beyond the threshold (drift that hid a real change)
    keeps its verdict."""
    before = median(base.rates)
    raw = median(current.rates) / before - 1 if before else 0.0
    if raw * change >= 0 or abs(raw) <= threshold / 2:
        return status, reason
    cal = f"{median(base.calibration_s) * 1e3:.0f} → {median(current.calibration_s) * 1e3:.0f} ms"
    return "inconclusive", (
        f"drift-corrected {change:+.0%} but raw images/s {raw:+.0%}: the calibration workload's median moved "
        f"({cal}) more than the loaders did; re-run to tell a change of the code from one of the calibration"
    )


def calibrated(sets: Sequence[ResultSet], series: Sequence[dict[Key, Series]]) -> bool:
    """Whether throughput can be drift-corrected across ``sets``: one calibration workload, timed in every round."""
    kinds = {rs.calibration for rs in sets}
    return len(kinds) == 1 and None not in kinds and all(s.calibrated for ser in series for s in ser.values())


def _key(p: Point) -> Key:
    return (p.pipeline, p.loader, p.workers, p.batch_size, p.augment_in)


def throughput(rs: ResultSet) -> dict[Key, Series]:
    """Every configuration's images/s rounds: each point's own, and the sequential loop's for each pipeline and
    batch size (its own point in a run file; in a sweep, the baseline rounds every point carries, each distinct
    measurement once)."""
    series: dict[Key, Series] = {}
    seen: set[tuple[Key, tuple[float, ...]]] = set()
    own = {_key(p) for p in rs.points if p.loader == BASELINE}
    for p in rs.points:
        series.setdefault(_key(p), Series(p.rates(), p.calibration_s, p.interference))
        base: Key = (p.pipeline, BASELINE, 0, p.batch_size, p.augment_in)
        if p.loader == BASELINE or base in own or (base, p.baseline_wall_s) in seen:
            continue
        seen.add((base, p.baseline_wall_s))
        before = series.get(base, Series((), ()))
        loads = before.interference + p.interference if len(p.interference) == p.rounds else ()
        if len(loads) != len(before.rates) + p.rounds:
            loads = ()  # one point without the machine's reading: none of the baseline's rounds can be told apart
        series[base] = Series(before.rates + p.baseline_rates(), before.calibration_s + p.calibration_s, loads)
    return series


def quiet_only(
    base: Sequence[float],
    current: Sequence[float],
    busy: tuple[Sequence[Interference], Sequence[Interference]],
    threshold: float,
) -> tuple[Status, float | None, str]:
    """``judge`` on rounds nothing else disturbed (the caller has left the busy ones out; ``busy`` are those, per
    side). Too few quiet rounds left is *inconclusive*, saying who was busy: a neighbour's load is never a
    regression."""
    need = rounds_needed(GATE_ALPHA)
    sides = (("baseline", base, busy[0]), ("current", current, busy[1]))
    short = [(which, kept, left) for which, kept, left in sides if left and len(kept) < need]
    if short or not base or not current:
        b, c = median(base) if base else None, median(current) if current else None
        change = c / b - 1 if b and c else None  # of the quiet rounds; none left on a side: no change to show
        why = "; ".join(
            f"{busy_word(left)} in the {which} results: {busy_summary(left, len(kept) + len(left))}"
            for which, kept, left in short
        )
        return "inconclusive", change, f"{why}; {need} quiet rounds a side are needed: re-run on a quiet machine"
    status, change, reason = judge(base, current, threshold)
    left_out = sum(len(left) for _, _, left in sides)
    return status, change, reason + (f" ({left_out} busy round(s) left out)" if left_out else "")


def judge(base: Sequence[float], current: Sequence[float], threshold: float) -> tuple[Status, float, str]:
    """A change beyond ``threshold`` with evidence is regressed or improved; without evidence, inconclusive."""
    found = evidence(base, current, GATE_ALPHA)
    if abs(found.change) <= threshold:
        return "ok", found.change, f"within ±{threshold:.0%}"
    if not found.significant:
        why = found.describe()
        return "inconclusive", found.change, why if found.p is None else f"rounds overlap, {why}: re-run with more --repeats"
    return ("regressed" if found.change < 0 else "improved"), found.change, f"{found.change:+.0%}, {found.describe()}"


# results of these kinds measure one thing once (decodings of one loader), not loaders against the sequential loop:
# neither the gate nor a history compares them
NOT_COMPARED = ("decode", "profile")


def compare(current: ResultSet, baseline: ResultSet, limits: Limits = Limits(), allow_other_machine: bool = False) -> Gate:
    for rs, which in ((current, "current"), (baseline, "--baseline")):
        if rs.kind in NOT_COMPARED:
            raise ConfigError(
                f"the {which} results are a `pdl {rs.kind}` file: the gate compares run, sweep and tune files; show it "
                "with `pdl report` alone"
            )
    same = check_same_machine(current, baseline, allow_other_machine)
    verdicts = _speedups(current, baseline, limits.speedup)
    notes = machine_notes(current, baseline)
    if same:
        rates, note = _throughputs(current, baseline, limits.images)
        verdicts += rates
        notes += [note] if note else []
    else:
        notes.append("another machine: images/s not compared (it depends on the machine); speedups only")
    if any(v.status == "inconclusive" for v in verdicts):
        notes.append(COMPARE_NOTE)
    return Gate(tuple(verdicts), tuple(notes), limits)


COMPARE_NOTE = (
    "a stored baseline cannot separate a change from the host's drift between the two runs: measure base and head "
    "in the same job, in interleaved pairs, with `pdl compare` (docs/ci-gate.md)"
)


def _speedups(current: ResultSet, baseline: ResultSet, threshold: float) -> list[Verdict]:
    cur = {_key(p): p for p in current.points if p.loader != BASELINE}
    base = {_key(p): p for p in baseline.points if p.loader != BASELINE}
    verdicts = []
    for key, b in base.items():
        c = cur.get(key)
        if c is None:
            verdicts.append(Verdict(key, "speedup", "missing", b.speedup, None, None, "not measured in the current results"))
        elif b.disturbed or c.disturbed:
            which = " and ".join(w for w, p in (("baseline", b), ("current", c)) if p.disturbed)
            reason = f"disturbed baseline in the {which} results: a speedup above the usable cores is not a result"
            verdicts.append(Verdict(key, "speedup", "inconclusive", b.speedup, c.speedup, c.speedup / b.speedup - 1, reason))
        else:
            bq, cq = _quiet(b, b.speedup_rounds), _quiet(c, c.speedup_rounds)
            status, change, reason = quiet_only(bq, cq, (b.busy_rounds(), c.busy_rounds()), threshold)
            verdicts.append(Verdict(key, "speedup", status, b.speedup, c.speedup, change, reason))
    verdicts += [
        Verdict(k, "speedup", "new", None, p.speedup, None, "not in the baseline") for k, p in cur.items() if k not in base
    ]
    return verdicts


def _throughputs(current: ResultSet, baseline: ResultSet, threshold: float) -> tuple[list[Verdict], str]:
    cur, base = throughput(current), throughput(baseline)
    corrected = calibrated((current, baseline), (cur, base))
    verdicts = []
    for key, b in base.items():
        c = cur.get(key)
        if c is None:
            continue  # said once, by its speedup row (or the sequential loop is in every file that has points)
        bk, ck = b.kept(), c.kept()
        rounds = (bk.corrected(), ck.corrected()) if corrected else (bk.rates, ck.rates)
        status, change, reason = quiet_only(*rounds, (b.busy(), c.busy()), threshold)
        if corrected and status in ("regressed", "improved") and change is not None:
            status, reason = against_raw(bk, ck, change, threshold, status, reason)
        verdicts.append(Verdict(key, "images/s", status, median(b.rates), median(c.rates), change, reason))
    if corrected:
        note = "images/s change: drift-corrected (images/s × the calibration workload's median seconds in the same run)"
    else:
        note = "images/s change: raw, machine drift NOT cancelled (a file without calibration rounds, from an older pdl)"
    return verdicts, note


def _quiet(p: Point, values: Sequence[float]) -> tuple[float, ...]:
    """``values`` (one per round of ``p``) of the rounds nothing else disturbed."""
    return tuple(v for v, ok in zip(values, p.quiet(), strict=True) if ok)


def machine_notes(current: ResultSet, baseline: ResultSet) -> list[str]:
    """What changed on the machine between the runs that may explain a verdict: the augmentation library or
    OpenCV, and a CPU quota's throttling."""
    notes = []
    bv, cv = baseline.machine.versions, current.machine.versions
    for name in ("albumentations_dist", "albumentations", "opencv", "numpy"):
        if name in bv and name in cv and bv[name] != cv[name]:
            label = "augmentation library" if name == "albumentations_dist" else name
            notes.append(f"{label} changed: {bv[name]} in the baseline, {cv[name]} now: the likely cause of a change in images/s")
    for which, rs in (("baseline", baseline), ("current", current)):
        rounds = [i for p in rs.points if p.loader != BASELINE and len(p.interference) == p.rounds for i in p.interference]
        said = throttle_summary(rounds)
        if said:
            notes.append(f"in the {which} results {said}: a quota is part of the machine measured")
    return notes


def check_same_machine(current: ResultSet, baseline: ResultSet, allow: bool) -> bool:
    """Whether both were measured on the same kind of machine; another one raises unless ``allow``."""
    a, b = current.machine.cpu, baseline.machine.cpu
    if (a.usable, a.model) == (b.usable, b.model):
        return True
    if allow:
        return False
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


def parse_threshold(option: str, text: str) -> float:
    return parse_share(option, text, "give a percentage between 0 and 100, e.g. 10%")
