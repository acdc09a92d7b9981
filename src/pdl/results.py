"""Versioned results files: config, raw per-round timings and machine metadata in one JSON, a tidy CSV beside.

Saved after every point, atomically (temporary file, then rename); a new run never overwrites a file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ResultsError

SCHEMA = "pdl.results"
VERSION = 1
KINDS = ("run", "sweep-workers", "sweep-batch")
CSV_FIELDS = (
    "kind", "pipeline", "loader", "workers", "batch_size", "prefetch", "augment_in", "round", "images",
    "wall_s", "baseline_wall_s", "speedup_round", "speedup", "images_per_s", "wait_share", "cpu_main_s",
    "cpu_workers_s", "startup_s", "first_batch_s", "handoff_ms", "usable_cores", "memory_peak_mb", "batch_mb",
)  # fmt: skip


@dataclass
class ResultSet:
    kind: str
    options: dict[str, Any]
    system: dict[str, Any]
    points: list[dict[str, Any]] = field(default_factory=list)
    command: list[str] = field(default_factory=lambda: list(sys.argv))
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    complete: bool = False
    schema: str = SCHEMA
    version: int = VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, default=_jsonable)

    @property
    def usable_cores(self) -> int:
        return int(self.system.get("cpu", {}).get("usable", 0))

    def csv_rows(self) -> list[dict[str, Any]]:
        """Tidy: one row per point and round."""
        rows = []
        for p in self.points:
            for r, wall in enumerate(p["wall_s"]):
                row = {k: p.get(k) for k in CSV_FIELDS}
                row.update(kind=self.kind, round=r + 1, wall_s=wall, usable_cores=self.usable_cores)
                row["baseline_wall_s"] = p["baseline_wall_s"][r]
                row["speedup_round"] = p["speedup_rounds"][r]
                row["memory_peak_mb"] = max(p["memory_peak_mb"]) if p.get("memory_peak_mb") else None  # with --memory
                rows.append(row)
        return rows

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.csv_rows())
        return out.getvalue()


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a results file")


class ResultWriter:
    """Claims a new ``<dir>/<timestamp>-<kind>.json`` (never an existing one) and rewrites it atomically."""

    def __init__(self, directory: Path, kind: str) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ResultsError(
                f"--results '{directory}': cannot create the folder ({exc.strerror}); pass a writable folder"
            ) from None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for n in range(1, 1000):
            path = directory / f"{stamp}-{kind}{'' if n == 1 else f'-{n}'}.json"
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                continue
            except OSError as exc:
                raise ResultsError(
                    f"--results '{directory}': cannot write there ({exc.strerror}); pass a writable folder"
                ) from None
            os.close(fd)
            self.path = path
            break
        else:
            raise ResultsError(f"--results '{directory}': too many results files named {stamp}-{kind}")
        self.saved = False

    @property
    def csv_path(self) -> Path:
        return self.path.with_suffix(".csv")

    def save(self, results: ResultSet) -> None:
        _atomic_write(self.path, results.to_json())
        _atomic_write(self.csv_path, results.to_csv())
        self.saved = True

    def discard_if_unused(self) -> None:
        """Remove the claimed name when nothing was ever saved into it (an error before the first point)."""
        if not self.saved:
            self.path.unlink(missing_ok=True)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> ResultSet:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"results file '{path}' does not exist; pass a file written by pdl (see results/)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"results file '{path}' is damaged or not JSON ({exc}); re-run the measurement") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultsError(f'\'{path}\' is not a pdl results file (no "schema": "{SCHEMA}"); pass a file written by pdl')
    if data.get("version") != VERSION:
        raise ResultsError(
            f"'{path}' has results schema version {data.get('version')!r}; this pdl reads version {VERSION}: "
            "re-run the measurement with this pdl"
        )
    try:
        results = ResultSet(**data)
        if results.kind not in KINDS or not isinstance(results.points, list):
            raise TypeError(f"kind {results.kind!r}")
        for p in results.points:
            p["wall_s"], p["speedup"], p["pipeline"], p["workers"]
    except (TypeError, KeyError) as exc:
        raise ResultsError(f"results file '{path}' is damaged (missing or wrong field: {exc}); re-run the measurement") from None
    return results


def newest(directory: Path) -> Path:
    files = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime) if directory.is_dir() else []
    if not files:
        raise ResultsError(f"no results files in '{directory}'; run `pdl run` or a sweep first, or name a file")
    return files[-1]
