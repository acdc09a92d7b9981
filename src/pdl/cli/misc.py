"""`pdl inputs`, `pdl info`, `pdl pipelines`: the helpers around the measurements."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from ..data.photos import (
    DEFAULT_COUNT,
    DEFAULT_MAX_SIDE,
    DEFAULT_MIN_SIDE,
    FORMATS,
    build_photos,
    check_options,
    parse_formats,
    summary,
)
from ..data.synth import DEFAULT_CLASSES, DEFAULT_PER_CLASS, generate
from ..errors import ConfigError
from .common import DEFAULT_INPUTS, err, guarded, out, path_value


@guarded
def inputs(
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", parser=path_value, help="Folder to write into. Default: inputs/, or photos/ with --photos."),
    ] = None,
    classes: Annotated[int | None, typer.Option("--classes", help=f"Class folders (default {DEFAULT_CLASSES}).")] = None,
    per_class: Annotated[int | None, typer.Option("--per-class", help=f"Images per class (default {DEFAULT_PER_CLASS}).")] = None,
    photos: Annotated[
        bool, typer.Option("--photos", help="Real photographs in mixed sizes and formats instead (needs the photos extra).")
    ] = False,
    count: Annotated[int | None, typer.Option("--count", help=f"--photos: images to write (default {DEFAULT_COUNT}).")] = None,
    min_side: Annotated[
        int | None, typer.Option("--min-side", help=f"--photos: shortest longer side, px (default {DEFAULT_MIN_SIDE}).")
    ] = None,
    max_side: Annotated[
        int | None, typer.Option("--max-side", help=f"--photos: longest longer side, px (default {DEFAULT_MAX_SIDE}).")
    ] = None,
    formats: Annotated[
        str | None,
        typer.Option("--formats", help="--photos: comma list among jpg,png,webp (default: all, 70/15/15%); jpg: JPEG only."),
    ] = None,
    no_upscale: Annotated[
        bool,
        typer.Option("--no-upscale", help="--photos: never enlarge a crop (only photos at least --min-side large are used)."),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same images.")] = 0,
) -> None:
    """Write a deterministic image set: photo-like JPEGs (`--classes 111 --per-class 1000` is the report's scale),
    or with `--photos` real photographs cropped, resized and saved as JPEG, PNG and WebP."""
    from .common import progress_bar

    other = (
        {"--classes": classes, "--per-class": per_class}
        if photos
        else {
            "--count": count,
            "--min-side": min_side,
            "--max-side": max_side,
            "--formats": formats,
            "--no-upscale": no_upscale or None,
        }
    )
    if given := [(name, value) for name, value in other.items() if value is not None]:
        name, value = given[0]
        fix = (
            "drop it and use --count/--min-side/--max-side/--formats/--no-upscale"
            if photos
            else "add --photos, or use --classes/--per-class"
        )
        given_as = name if value is True else f"{name} {value}"  # a flag is named alone
        raise ConfigError(f"{given_as} does not apply {'with' if photos else 'without'} --photos: {fix}")
    if photos:
        target = out_dir or Path("photos")
        n = DEFAULT_COUNT if count is None else count
        sides = (DEFAULT_MIN_SIDE if min_side is None else min_side, DEFAULT_MAX_SIDE if max_side is None else max_side)
        kinds = parse_formats(formats) if formats is not None else FORMATS
        check_options(n, *sides, seed)
        with progress_bar(n, quiet=False) as tick:
            made = build_photos(target, n, *sides, seed, lambda done, total: tick(f"writing {target}"), kinds, not no_upscale)
        err.print(summary(made), soft_wrap=True)
        return
    target = out_dir or Path("inputs")
    classes = DEFAULT_CLASSES if classes is None else classes
    per_class = DEFAULT_PER_CLASS if per_class is None else per_class
    with progress_bar(max(classes * per_class, 0), quiet=False) as tick:
        n = generate(target, classes, per_class, seed, progress=lambda done, total: tick(f"writing {target}"))
    err.print(f"wrote {n} images in {classes} class folders under {target}/")


@guarded
def info() -> None:
    """The machine as pdl sees it: cores it may use, memory, /dev/shm and where the batch ring lives, library
    versions, start method."""
    from .._env import limit_threads
    from ..loaders.ring import MEMFD, backing
    from ..machine.host import system_info

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
        ("usable cores", cpu["usable"]),
        ("memory", _gib(data["memory_total_bytes"])),
        ("/dev/shm", f"{_gib(data['shm_free_bytes'])} free of {_gib(data['shm_total_bytes'])}"),
        ("batch ring", "memfd (not bounded by /dev/shm)" if backing() == MEMFD else "/dev/shm"),
        ("OS", data["os"]),
        ("Python", data["python"]),
        *((name, version) for name, version in data["versions"].items()),  # type: ignore[attr-defined]
        ("OpenCV threads (pdl sets 1)", data["opencv_threads"]),
        ("worker start method", data["start_method"]),
        ("inputs/ filesystem", _filesystem(DEFAULT_INPUTS)),
        *_load_now(),
    ]
    table = Table(title="pdl info", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:  # Text: a CPU model or path with brackets is shown as it is, not read as markup
        table.add_row(Text(key), Text(str(value), style="bold" if key == "usable cores" else ""))
    out.print(table)


def _load_now() -> list[tuple[str, object]]:
    """What competes for the usable cores right now (one look of ``contention.QUIET_WINDOW_S``): what a measuring
    command would wait for."""
    from ..machine.contention import Watch

    watch = Watch()
    seen = watch.look()
    top = seen.top or watch.top()

    def unknown(v: float | None, fmt: str) -> str:
        return "unknown here" if v is None else fmt.format(v)

    verdict = "busy: measuring would wait (--wait-quiet)" if seen.disturbed else "quiet"
    return [
        ("load now: others", unknown(seen.others, f"{{:.2f}} of {seen.usable} usable cores ({verdict})")),
        ("load now: busiest others", ", ".join(top) or "none above 0.05 cores"),
        ("load now: steal (VM)", unknown(seen.steal, "{:.2f} cores")),
        (
            "load now: cgroup throttling",
            "no CPU quota" if seen.throttled is None else f"{seen.throttled} periods, {seen.throttled_s or 0.0:.3f} s",
        ),
        ("load now: CPU pressure (some)", unknown(seen.pressure, "{:.0%} of the time")),
    ]


def _filesystem(path: Path) -> str:
    """The filesystem and device holding ``path`` (or, before it exists, its folder): what --cache cold evicts from."""
    from ..machine.host import filesystem

    found = filesystem(path if path.exists() else path.resolve().parent)
    if found is None:
        return "unknown"
    fstype, device, mount = found
    note = " (kept in memory: --cache cold cannot evict it)" if fstype in ("tmpfs", "ramfs") else ""
    return f"{fstype} on {device}, mounted at {mount}{note}"


def _gib(n: object) -> str:
    return "unknown" if not isinstance(n, int) else f"{n / 2**30:.1f} GiB"


@guarded
def pipelines() -> None:
    """The shipped augmentation levels, in order of complexity."""
    from ..data.pipeline import load_pipeline, shipped_names

    table = Table(title="shipped pipelines (configs/pipelines/)", title_justify="left")
    for col in ("name", "transforms", "output", "description"):
        table.add_column(col)
    for name in shipped_names():
        p = load_pipeline(name)
        n = len(p.spec["transform"]["transforms"])
        shape = "×".join(map(str, p.output_shape)) if p.output_shape else "?"
        table.add_row(name, str(n), f"{shape} {p.output_dtype}", p.description)
    out.print(table)
