"""`pdl inputs`, `pdl info`, `pdl pipelines`: the helpers around the measurements."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..inputs import DEFAULT_CLASSES, DEFAULT_PER_CLASS, generate
from .common import err, guarded, out


@guarded
def inputs(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write into.")] = Path("inputs"),
    classes: Annotated[int, typer.Option("--classes", help="Class folders.")] = DEFAULT_CLASSES,
    per_class: Annotated[int, typer.Option("--per-class", help="Images per class.")] = DEFAULT_PER_CLASS,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same images.")] = 0,
) -> None:
    """Write a deterministic set of photo-like JPEGs (`--classes 111 --per-class 1000` is the report's scale)."""
    from .common import progress_bar

    with progress_bar(classes * per_class, quiet=False) as tick:
        n = generate(out_dir, classes, per_class, seed, progress=lambda done, total: tick(f"writing {out_dir}"))
    err.print(f"wrote {n} images in {classes} class folders under {out_dir}/")


@guarded
def info() -> None:
    """The machine as pdl sees it: cores it may use, memory, /dev/shm, library versions, start method."""
    from .._env import limit_threads
    from ..system import system_info

    limit_threads()
    data = system_info()
    cpu = data["cpu"]
    assert isinstance(cpu, dict)
    quota = cpu["cgroup_quota"]
    rows = [
        ("CPU", cpu["model"]),
        ("logical cores", cpu["logical"]),
        ("physical cores", cpu["physical"]),
        ("affinity (cores this process may run on)", cpu["affinity"]),
        ("cgroup CPU quota", "none" if quota is None else f"{quota:g} CPUs"),
        ("PDL_MAX_CPUS", cpu["override"] if cpu["override"] is not None else "unset"),
        ("usable cores", f"[bold]{cpu['usable']}[/]"),
        ("memory", _gib(data["memory_total_bytes"])),
        ("/dev/shm", f"{_gib(data['shm_free_bytes'])} free of {_gib(data['shm_total_bytes'])}"),
        ("OS", data["os"]),
        ("Python", data["python"]),
        *((name, version) for name, version in data["versions"].items()),  # type: ignore[attr-defined]
        ("OpenCV threads (pdl sets 1)", data["opencv_threads"]),
        ("worker start method", data["start_method"]),
    ]
    table = Table(title="pdl info", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, str(value))
    out.print(table)


def _gib(n: object) -> str:
    return "unknown" if not isinstance(n, int) else f"{n / 2**30:.1f} GiB"


@guarded
def pipelines() -> None:
    """The shipped augmentation levels, in order of complexity."""
    from ..pipeline import load_pipeline, shipped_names

    table = Table(title="shipped pipelines (configs/pipelines/)", title_justify="left")
    for col in ("name", "transforms", "output", "description"):
        table.add_column(col)
    for name in shipped_names():
        p = load_pipeline(name)
        n = len(p.spec["transform"]["transforms"])
        shape = "×".join(map(str, p.output_shape)) if p.output_shape else "?"
        table.add_row(name, str(n), f"{shape} {p.output_dtype}", p.description)
    out.print(table)
