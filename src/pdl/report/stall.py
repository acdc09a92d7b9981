"""The stall's answer for people: how many workers keep the step fed, or how many cores it would take."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..bench.point import Point
from ..stats.rounds import TARGET_STALL, median


def cpu_ms_per_image(p: Point) -> float:
    """CPU the loading cost per image, ms: main process and workers, less a cpu step's own spinning."""
    spinning = (p.step_s or 0.0) if p.step_kind == "cpu" else 0.0
    return max(p.cpu_main_s + p.cpu_workers_s - spinning, 0.0) / p.images * 1e3 if p.images else 0.0


def cores_needed(cpu_ms_per_image: float, batch_size: int, step_ms: float, step_kind: str | None = "gpu") -> float:
    """Busy cores that keep one step per ``step_ms`` fed at ``batch_size``: a batch's CPU per step time; a cpu
    step keeps the main process busy too (one more core)."""
    return cpu_ms_per_image * batch_size / step_ms + (1.0 if step_kind == "cpu" else 0.0)


@dataclass(frozen=True)
class Answer:
    """For one pipeline and loader: the fewest workers whose stall is within the target, or the cores it takes."""

    pipeline: str
    loader: str
    target: float
    workers: int | None  # the fewest measured workers with stall <= target; None when none reached it
    stall: float | None  # that point's stall; else the lowest stall measured
    memory_mb: float | None  # that point's peak memory, when measured
    cpu_ms_per_image: float  # median over the points
    batch_size: int
    step_ms: float
    cores_needed: float
    usable: int


def answer(points: Sequence[Point], usable: int, target: float = TARGET_STALL) -> Answer | None:
    """The answer for points of one pipeline and loader measured with a step; None without a step."""
    stepped = sorted((p for p in points if p.step_ms and p.stall_share is not None), key=lambda p: p.workers)
    if not stepped:
        return None
    first = stepped[0]
    cpu = median([cpu_ms_per_image(p) for p in stepped])
    fed = next((p for p in stepped if p.stall_share is not None and p.stall_share <= target), None)
    shown = fed or min(stepped, key=lambda p: p.stall_share or 0.0)
    return Answer(
        pipeline=first.pipeline,
        loader=first.loader,
        target=target,
        workers=fed.workers if fed else None,
        stall=shown.stall_share,
        memory_mb=max(fed.memory_peak_mb) if fed and fed.memory_peak_mb else None,
        cpu_ms_per_image=cpu,
        batch_size=first.batch_size,
        step_ms=first.step_ms or 0.0,
        cores_needed=cores_needed(cpu, first.batch_size, first.step_ms or 1.0, first.step_kind),
        usable=usable,
    )


def answer_line(a: Answer) -> str:
    """The answer in words, e.g. 'heavy: fewest workers with stall ≤ 5%: 3 (peak memory 812 MB)'."""
    head = f"{a.pipeline} · {a.loader}"
    if a.workers is not None:
        memory = f" (peak memory {a.memory_mb:.0f} MB)" if a.memory_mb is not None else ""
        return f"{head}: fewest workers with stall ≤ {a.target:.0%}: {a.workers}{memory}; its stall {a.stall:.1%}"
    line = (
        f"{head}: no worker count measured reached stall ≤ {a.target:.0%} (lowest {a.stall or 0:.1%}); "
        f"{a.pipeline} needs ≈ {a.cpu_ms_per_image:.1f} ms CPU per image; one step per {a.step_ms:g} ms at batch "
        f"{a.batch_size} needs ≈ {a.cores_needed:.1f} busy cores; this machine has {a.usable} usable"
    )
    if a.cores_needed <= a.usable:
        line += " (enough: the stall is the epoch's first batches, or other load on the machine; try more images)"
    return line
