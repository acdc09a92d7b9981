"""`pdl decode`'s table."""

from __future__ import annotations

from ..bench.records import ResultSet
from .grid import Grid, noise_notes, speedup_cell

MAD_NOTE = (
    "MAD: mean absolute difference between the pipeline's outputs from full and from reduced decoding, same "
    "per-image seeds, over the images decoded reduced only (uint8: 0–255; a float pipeline: in its own units)"
)


def decode_grid(rs: ResultSet) -> Grid:
    """`pdl decode`: per pipeline, images/s with full and with reduced decoding, the gain, who was reduced, MAD."""
    pts = rs.points
    first = pts[0] if pts else None
    workers = f" · {first.workers} workers" if first and first.workers else ""
    where = f"{first.loader}{workers} · batch {first.batch_size}" if first else ""
    grid = Grid(
        f"pdl decode: what --reduce-decode gains · {where} · {rs.machine.summary()}",
        ["pipeline", "images/s full", "images/s reduced", "gain × (min–max)", "reduced n (scales)", "full n", "MAD"],
    )
    told = {d.pipeline: d for d in rs.decoded}
    full = {p.pipeline: p for p in pts if not p.reduce_decode}
    reduced = [p for p in pts if p.reduce_decode]
    for p in reduced:
        d, base = told.get(p.pipeline), full.get(p.pipeline)
        scales = ", ".join(f"1/{f}: {n}" for f, n in d.scales.items() if n) if d else ""
        mad = "" if d is None else f"{d.mad:.2f}" if d.output_dtype == "uint8" else f"{d.mad:.3g} ({d.output_dtype})"
        grid.rows.append([
            p.pipeline, f"{base.images_per_s:.0f}" if base else "", f"{p.images_per_s:.0f}", speedup_cell(p),
            (f"{d.reduced}" + (f" ({scales})" if scales else "")) if d else "", str(d.full) if d else "", mad,
        ])  # fmt: skip
    grid.notes = [f"{d.pipeline}: no image decoded reduced ({d.why_none})" for d in rs.decoded if d.why_none]
    grid.notes += [*noise_notes(reduced), MAD_NOTE]
    if not rs.complete:
        grid.notes.append("the run did not finish: these are the pipelines measured before it stopped")
    return grid
