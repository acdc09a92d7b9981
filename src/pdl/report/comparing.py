"""`pdl compare`'s table: per measure, base and head, the paired change with its interval, the verdict and the pairs
it took; then the sides, the pairs dropped and why, and what an undecided measure would need."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from ..bench.compared import Compared, Measured, SideInfo
from ..bench.records import ResultSet
from ..errors import ResultsError
from .grid import Grid

EXIT_OK, EXIT_REGRESSION, EXIT_INCONCLUSIVE = 0, 1, 3
STOPPED = {
    "decided": "every measure decided",
    "regressed": "a measure regressed (no more pairs could pass it)",
    "max-time": "the time ran out (--max-time)",
    "max-pairs": "the pairs ran out (--max-pairs)",
    "running": "still measuring (an interrupted comparison)",
}


def exit_code(measured: Sequence[Measured]) -> int:
    """1 when a measure regressed; 3 when one is inconclusive (or none was judged); else 0."""
    if any(m.status == "regressed" for m in measured):
        return EXIT_REGRESSION
    if not measured or any(m.status in ("inconclusive", "undecided") for m in measured):
        return EXIT_INCONCLUSIVE
    return EXIT_OK


def compared_of(rs: ResultSet) -> Compared:
    if rs.compared is None:
        raise ResultsError("this compare results file holds no pairs yet (it was interrupted at start)")
    return rs.compared


def interval(m: Measured) -> str:
    """'−3.1% (−4.0 … −2.2)': the estimate and its interval, in percent."""
    if m.low is None or m.high is None:
        return f"{m.change:+.1%} (too few pairs)"
    return f"{m.change:+.1%} ({m.low * 100:+.1f} … {m.high * 100:+.1f})"


def value(v: float, measure: str) -> str:
    return f"{v:.2f}×" if measure == "speedup" else f"{v:.0f}"


def compare_grid(rs: ResultSet) -> Grid:
    c = compared_of(rs)
    confidence = f"{c.confidence:.0%}"
    grid = Grid(
        f"compare · {_what(c.base, c.head)} · {rs.machine.summary()}",
        ["measure", "loader", "base", "head", f"change ({confidence} interval)", "verdict", "pairs"],
    )
    for m in c.measured:
        status = m.status.upper() if m.status == "regressed" else m.status
        grid.rows.append(
            [m.measure, m.loader, value(m.base, m.measure), value(m.head, m.measure), interval(m), status, str(m.pairs)]
        )
    grid.notes = [
        *side_lines(c),
        pairs_line(c),
        rule_line(c),
        *[line for m in c.measured if (line := open_line(m))],
    ]
    return grid


def _what(base: SideInfo, head: SideInfo) -> str:
    """'medium, 2 workers, batch 64', or 'base.yaml → head.yaml, 2 workers, batch 64' where the sides differ."""
    parts = []
    for key, name in (("pipelines", ""), ("workers", " workers"), ("batch_sizes", "")):
        b, h = base.options.get(key), head.options.get(key)
        b_text, h_text = _one(b, name, key), _one(h, name, key)
        parts.append(h_text if b_text == h_text else f"{b_text} → {h_text}")
    return ", ".join(parts)


def _one(values: object, name: str, key: str) -> str:
    v = values[0] if isinstance(values, list | tuple) and values else values
    return f"batch {v}" if key == "batch_sizes" else f"{v}{name}"


def side_lines(c: Compared) -> list[str]:
    """Each side's environment; whether the two did the same work (equal warm-up digests)."""
    lines = []
    for s in (c.base, c.head):
        lines.append(
            f"{s.label}: {s.pipeline} · {', '.join(s.loaders)} · {s.images} images · python {s.python} · pdl {s.pdl} · "
            f"{s.augmentation} · set up in {s.setup_s:.0f} s"
        )
    same = c.base.digest == c.head.digest and bool(c.base.digest)
    lines.append(
        "same work on both sides: the warm-up batches are bit-identical"
        if same
        else "the sides made different batches (another pipeline, library or option): the change is theirs"
    )
    return lines


def pairs_line(c: Compared) -> str:
    kept = [p for p in c.pairs if p.kept]
    dropped = [p for p in c.pairs if not p.kept]
    text = f"{len(kept)} pairs kept"
    if dropped:
        why = Counter(_short(p.why) for p in dropped).most_common(3)
        text += f", {len(dropped)} dropped and measured again ({'; '.join(f'{n}× {w}' for w, n in why)})"
    orders = Counter(p.order for p in kept)
    text += f"; order base first {orders.get('base,head', 0)}, head first {orders.get('head,base', 0)}"
    return f"{text}; {c.seconds:.0f} s in all; stopped: {STOPPED.get(c.stopped, c.stopped)}"


def _short(why: str) -> str:
    return why if len(why) <= 90 else why[:87] + "…"


def rule_line(c: Compared) -> str:
    said = f"{c.max_slowdown:.0%} of images/s, {c.max_speedup_drop:.0%} of speedup"
    return (
        f"verdicts from each pair's log ratio head/base (Hodges–Lehmann estimate, Wilcoxon signed-rank {c.confidence:.0%} "
        f"interval): regressed when the whole interval lies below −threshold ({said}); no regression when it lies above it "
        "(improved: above +threshold); otherwise more pairs"
    )


def open_line(m: Measured) -> str | None:
    """What an inconclusive measure would need."""
    if m.status != "inconclusive":
        return None
    what = f"{m.loader} {m.measure}: {interval(m)} straddles -{m.threshold:.0%}"
    if m.more_pairs is None:
        return f"{what}: the change sits at the threshold, so more pairs will not decide it"
    return f"{what}: about {m.more_pairs} pairs in all would decide it at this spread (raise --max-time or --max-pairs)"


def change_summary(m: Measured) -> str:
    """'process images/s −3.1% (−4.0 … −2.2)' for a progress line."""
    return f"{m.loader} {m.measure} {interval(m)}"


def log_width(m: Measured) -> float | None:
    if m.low is None or m.high is None:
        return None
    return (math.log1p(m.high) - math.log1p(m.low)) / 2
