"""`pdl profile`'s tables: each transform's cost per image with read and decode beside it; the decoders; a
loader with each decoder; and the one line to act on."""

from __future__ import annotations

from collections.abc import Sequence

from ..bench.outcomes import DecoderSpeed, Profiled, TransformCost
from ..bench.point import Point
from ..bench.records import ResultSet
from ..stats.rounds import median
from .grid import Grid, noise_notes, ratio, speedup_cell

SUM_WITHIN = 0.10  # the transforms' sum and the pipeline timed whole should agree this closely
FASTER = 1.05  # a decoder this much faster than OpenCV is worth naming


def _ms(values: tuple[float, ...]) -> float:
    return median(values) if values else 0.0


def _leaves(pr: Profiled) -> list[TransformCost]:
    return [t for t in pr.transforms if not t.group]


def profile_grid(pr: Profiled, title_tail: str) -> Grid:
    """Read, decode and the pipeline whole, then every transform (branches indented under their group)."""
    read, decode, augment = _ms(pr.read_ms), _ms(pr.decode_ms), _ms(pr.augment_ms)
    total = read + decode + augment
    grid = Grid(
        f"pdl profile: {pr.pipeline} · {pr.images} images · {pr.repeats} repeats · decoder {pr.decoder} · {title_tail}",
        ["stage / transform", "p", "ran", "ms/image", "% of augment", "% of all", "ms when run"],
    )

    def share(ms: float, of: float) -> str:
        return f"{ms / of:.0%}" if of > 0 else ""

    first = "__getitem__ (timed whole)" if pr.timed_whole else "read"
    grid.rows.append([first, "", "", f"{read:.3f}", "", share(read, total), ""])
    if not pr.timed_whole:
        grid.rows.append(["decode", "", "", f"{decode:.3f}", "", share(decode, total), ""])
    grid.rows.append(["augment (whole pipeline)", "", "", f"{augment:.3f}", "100%", share(augment, total), ""])
    for t in pr.transforms:
        ms = _ms(t.ms)
        name = "  " * (t.depth + 1) + (f"└ {t.name}" if t.depth else t.name)
        ran = f"{t.ran}/{pr.images} ({t.ran / pr.images:.0%})" if pr.images else ""
        when = f"{ms * pr.images / t.ran:.3f}" if t.ran else ""
        grid.rows.append([name, f"{t.p:g}", ran, f"{ms:.3f}", share(ms, augment), share(ms, total), when])
    parts = sum(_ms(t.ms) for t in _leaves(pr))
    grid.rows.append(["sum of transforms", "", "", f"{parts:.3f}", share(parts, augment), share(parts, total), ""])
    grid.notes = [sum_note(parts, augment)]
    if pr.timed_whole:
        grid.notes.append("a dataset of one's own: its __getitem__ is timed whole (read and decode together), as --stages does")
    if not pr.same_output:
        grid.notes.append(
            "warning: the instrumented pipeline's outputs differed from the plain one's: the per-transform times are suspect"
        )
    grid.notes.append(
        "ms/image: over all images (those a transform skipped included), median of the repeats; ms when run: per image it "
        "ran on; ran: images whose random draw applied it (a group: any of its branches), the same in every repeat"
    )
    return grid


def sum_note(parts: float, whole: float) -> str:
    """How the transforms' sum compares with the pipeline timed whole, and where the difference goes."""
    if whole <= 0:
        return "the pipeline took no measurable time"
    diff = (whole - parts) / whole
    verdict = (
        f"within {SUM_WITHIN:.0%}" if abs(diff) <= SUM_WITHIN else f"NOT within {SUM_WITHIN:.0%}: re-run with more --repeats"
    )
    if diff > SUM_WITHIN:  # below: noise, or a library whose own work is large (AlbumentationsX's: 55-80% on small images)
        verdict += "; a gap that stays is the library's own work (AlbumentationsX's is large)"
    where = (
        "albumentations' own work between transforms (its checks and random state per image) and the timers"
        if diff >= 0
        else "timing noise (the instrumented and the plain pipeline are timed apart)"
    )
    side = "below" if diff >= 0 else "above"
    return (
        f"sum of transforms {parts:.3f} ms per image, {abs(diff):.1%} {side} the pipeline timed whole ({whole:.3f} ms; "
        f"{verdict}): the difference is {where}"
    )


def decoders_grid(pr: Profiled, title_tail: str) -> Grid:
    """Each decoder's JPEGs/s at full and reduced scale, its ratio to OpenCV, its difference from OpenCV's pixels."""
    rows = pr.decoders
    jpegs = rows[0].jpegs if rows else 0
    grid = Grid(
        f"pdl profile: decoders · {jpegs} JPEGs · {pr.repeats} interleaved rounds · {title_tail}",
        ["decoder", "JPEGs/s", "× opencv", "JPEGs/s reduced", "× opencv reduced", "MAD vs opencv", "MAD reduced"],
    )
    base = next((d for d in rows if d.decoder == "opencv" and d.images_per_s), None)
    for d in rows:
        if d.images_per_s is None:
            grid.rows.append([d.decoder, f"not installed: {d.missing}", "", "", "", "", ""])
            continue
        grid.rows.append([
            d.decoder, f"{d.images_per_s:.0f}", _times(d.images_per_s, base.images_per_s if base else None),
            f"{d.reduced_per_s:.0f}" if d.reduced_per_s else "",
            _times(d.reduced_per_s, base.reduced_per_s if base else None),
            f"{d.mad:.3f}" if d.mad is not None else "", f"{d.mad_reduced:.3f}" if d.mad_reduced is not None else "",
        ])  # fmt: skip
    reduced = rows[0].reduced if rows else 0
    if reduced:
        grid.notes.append(
            f"reduced: --reduce-decode's scale for this pipeline's first resize ({reduced} of {jpegs} JPEGs decode at 1/2, 1/4 or 1/8; the rest at full size)"
        )
    else:
        grid.notes.append(
            "reduced: none here: the pipeline's first transform is not a fixed resize, or no JPEG is twice its size"
        )
    grid.notes.append(
        "MAD: mean absolute pixel difference (0–255) from OpenCV's output at the same scale; other formats decode through OpenCV whatever the choice"
    )
    return grid


def _times(value: float | None, base: float | None) -> str:
    return ratio(value / base) if value and base else ""


def loaders_grid(rs: ResultSet, title_tail: str) -> Grid:
    """`--loader`: the loader's images/s with each decoder, measured in the same interleaved rounds."""
    first = rs.points[0]
    workers = f" · {first.workers} workers" if first.workers else ""
    grid = Grid(
        f"pdl profile: {first.loader}{workers} · batch {first.batch_size} with each decoder, interleaved · {title_tail}",
        ["decoder", "images/s", "× opencv (min–max)", "same batches as opencv"],
    )
    for p in rs.points:
        same = "" if p.same_batches is None else "yes" if p.same_batches else "no"
        base = p.decoder == "opencv"
        grid.rows.append([p.decoder, f"{p.images_per_s:.0f}", "baseline" if base else speedup_cell(p), "" if base else same])
    grid.notes = noise_notes(rs.points[1:])
    return grid


def advice(pr: Profiled, points: Sequence[Point] = ()) -> str:
    """The one line to act on: the biggest lever, decoding or a transform. ``points``: a loader timed with each
    decoder (``--loader``): what the fastest decoder made of the loader's images/s is said too."""
    leaves = _leaves(pr)
    read, decode, augment = _ms(pr.read_ms), _ms(pr.decode_ms), _ms(pr.augment_ms)
    total = read + decode + augment
    top = max(leaves, key=lambda t: _ms(t.ms), default=None)
    top_ms = _ms(top.ms) if top else 0.0
    if pr.timed_whole or top is None or top_ms >= decode:
        if top is None or augment <= 0:
            return f"{pr.pipeline} costs {total:.2f} ms per image; nothing in it to trim"
        return (
            f"{top.name} is {top_ms / augment:.0%} of {pr.pipeline}'s augment time at p={top.p:g} ({top_ms:.2f} of {augment:.2f} ms "
            f"per image): lower its p or drop it to save up to that; decoding is {decode / total:.0%} of the time per image"
        )
    line = f"decoding is {decode / total:.0%} of the time per image ({decode:.2f} of {total:.2f} ms), more than any transform"
    best = _fastest(pr.decoders)
    if best is not None:
        said = f"{line}: --decoder {best[0].decoder} decodes these JPEGs {best[1]:.2f}× as fast as OpenCV (faster in every round)"
        with_it = next((p for p in points if p.decoder == best[0].decoder), None)
        if with_it is None:
            return said
        gain = "a gain" if with_it.speedup_min > 1 else "no gain it can show"
        return (
            f"{said}; in {with_it.loader} it made {with_it.speedup:.2f}× (min–max {with_it.speedup_min:.2f}–"
            f"{with_it.speedup_max:.2f}) the images/s with OpenCV: {gain}"
        )
    if pr.decoders and pr.decoders[0].reduced * 4 >= pr.decoders[0].jpegs:  # a quarter of the JPEGs or more
        return f"{line}: --reduce-decode decodes {pr.decoders[0].reduced} of these JPEGs at a reduced scale"
    if pr.decoders:
        return f"{line}: no decoder measured beat OpenCV by {FASTER - 1:.0%} in every round; a smaller first resize would let --reduce-decode help"
    return f"{line}: compare decoders with --decoders opencv,pillow,simplejpeg, or try --reduce-decode"


def _fastest(rows: tuple[DecoderSpeed, ...]) -> tuple[DecoderSpeed, float] | None:
    """The fastest decoder that beat OpenCV by ``FASTER`` at the median and in every round; None if none did."""
    base = next((d for d in rows if d.decoder == "opencv" and d.images_per_s), None)
    if base is None or not base.images_per_s:
        return None
    ranked = [
        (d, d.images_per_s / base.images_per_s)
        for d in rows
        if d.images_per_s and d.decoder != "opencv" and len(d.rates) == len(base.rates)
        and all(a > b for a, b in zip(d.rates, base.rates, strict=True))
    ]  # fmt: skip
    best = max(ranked, key=lambda x: x[1], default=None)
    return best if best is not None and best[1] >= FASTER else None


def profile_grids(rs: ResultSet) -> list[Grid]:
    """Every table `pdl profile` printed; the last note of the last is the line to act on."""
    pr = rs.profiled
    if pr is None:
        grid = Grid("pdl profile: nothing measured", ["stage / transform"])
        grid.notes.append("the run stopped before the profile finished")
        return [grid]
    tail = rs.machine.summary()
    grids = [profile_grid(pr, tail)]
    if pr.decoders:
        grids.append(decoders_grid(pr, tail))
    if rs.points:
        grids.append(loaders_grid(rs, tail))
    if not rs.complete:
        grids[-1].notes.append("the run did not finish: these are what was measured before it stopped")
    grids[-1].notes.append(advice(pr, rs.points))
    return grids
