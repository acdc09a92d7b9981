"""Hand-made results for tests of renderers and verdicts: exact numbers, no measuring."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pdl.bench.point import Point
from pdl.bench.records import Cpu, Machine, ResultSet
from pdl.stats.rounds import speedup

MACHINE = Machine(
    hostname="testbox",
    cpu=Cpu(model="Test CPU 3000", logical=4, physical=2, affinity=4, cgroup_quota=None, override=None, usable=4),
    memory_total_bytes=16 * 2**30,
    shm_total_bytes=8 * 2**30,
    shm_free_bytes=8 * 2**30,
    os="Linux 6.0",
    python="3.11.7",
    versions={"opencv": "5.0.0", "albumentations": "2.0.8", "numpy": "2.4.6", "pdl": "0.1.0"},
    opencv_threads=1,
    start_method="fork",
)


def point(
    loader: str,
    workers: int,
    base: list[float],
    walls: list[float],
    pipeline: str = "light",
    batch_size: int = 8,
    images: int = 80,
    **fields: Any,
) -> Point:
    sp = speedup(base, walls)
    made = Point(
        pipeline=pipeline, loader=loader, workers=workers, batch_size=batch_size, prefetch=2, augment_in="workers",
        images=images, wall_s=tuple(walls), baseline_wall_s=tuple(base), speedup=sp.median, speedup_min=sp.low,
        speedup_max=sp.high, speedup_rounds=sp.rounds, noisy=sp.noisy(),
        images_per_s=images / sorted(walls)[len(walls) // 2], startup_s=0.05, first_batch_s=0.2, warmup_epoch_s=1.0,
        wait_share=0.5, cpu_main_s=0.1, cpu_workers_s=2.0,
        stages_s={"read": 0.1, "decode": 0.5, "augment": 1.0, "collate": 0.05}, handoff_ms=0.3, copied_batches=0, skipped=(),
    )  # fmt: skip
    return replace(made, **fields)


def results(kind: str, points: list[Point], machine: Machine = MACHINE, **fields: Any) -> ResultSet:
    made = ResultSet(kind, {"repeats": 3}, machine, tuple(points), ("pdl",), "2026-01-01T00:00:00", complete=True)
    return replace(made, **fields)


def sweep_workers(
    factor: float = 1.0, rounds: int = 3, jitter: float = 0.0, calibration_s: float | None = None, cost: float = 1.0
) -> ResultSet:
    """Two pipelines × workers 1, 2, 4, 8 on a 4-core machine; the loaders' walls divided by ``factor``, every wall
    (the sequential loop's too) times ``cost`` (a per-image cost change: speedups stay). ``jitter``: the rounds'
    walls spread by up to that share, in a fixed pattern (a rank test needs rounds that differ); ``calibration_s``:
    every round's calibration seconds (none by default, as in a file from an older pdl)."""
    pattern = [1 + jitter * ((r * 7) % 5 - 2) / 2 for r in range(rounds)]
    base = [8.0 * cost * j for j in pattern]
    points = []
    for pipe, curve in (("light", {1: 1.0, 2: 1.9, 4: 3.2, 8: 2.5}), ("heavy", {1: 1.0, 2: 2.0, 4: 3.8, 8: 3.9})):
        for w, s in curve.items():
            walls = [8.0 * cost / (s * factor) * j for j in reversed(pattern)]
            cal = {} if calibration_s is None else {"calibration_s": (calibration_s,) * rounds}
            points.append(point("process", w, base, walls, pipeline=pipe, **cal))
    return results("sweep-workers", points, calibration=None if calibration_s is None else "test")
