"""Versioned results files: config, raw per-round timings and machine metadata in one JSON, a tidy CSV beside.

Saved after every point, atomically (temporary file, then rename); a new run never overwrites a file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from ..data.bounds import MAX_NESTING, MAX_RESULTS_BYTES, REASON_CHARS, cut, nesting, quote
from ..errors import ResultsError
from .records import SCHEMA, VERSION, ResultSet, upgrade

CSV_FIELDS = (
    "kind", "pipeline", "loader", "workers", "batch_size", "prefetch", "augment_in", "round", "images",
    "wall_s", "baseline_wall_s", "speedup_round", "speedup", "images_per_s", "wait_share", "cpu_main_s",
    "cpu_workers_s", "startup_s", "first_batch_s", "handoff_ms", "usable_cores", "memory_peak_mb", "batch_mb",
    "step_ms", "step_kind", "stall_share", "stall_round", "ideal_images_per_s", "wait_p50_ms", "wait_p90_ms", "wait_p99_ms",
    "loader_version", "same_batches", "reduce_decode", "decoder", "side",
)  # fmt: skip  # a Point field of the same name fills its column; the others are set per round below


def to_json(results: ResultSet) -> str:
    return json.dumps(results.to_dict(), indent=1, default=_jsonable)


def csv_rows(results: ResultSet) -> list[dict[str, Any]]:
    """Tidy: one row per point and round."""
    rows = []
    for p in results.points:
        for r, wall in enumerate(p.wall_s):
            row = {k: getattr(p, k, None) for k in CSV_FIELDS}
            row.update(
                kind=results.kind,
                round=r + 1,
                wall_s=wall,
                baseline_wall_s=p.baseline_wall_s[r],
                speedup_round=p.speedup_rounds[r],
                usable_cores=results.machine.cpu.usable,
                memory_peak_mb=max(p.memory_peak_mb) if p.memory_peak_mb else None,  # with --memory
                stall_round=p.stall_rounds[r] if r < len(p.stall_rounds) else None,  # with --step-ms
            )
            rows.append(row)
    return rows


def to_csv(results: ResultSet) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(results))
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
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)  # the umask decides, as for any file
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
        self.directory = directory
        self.moved: str | None = None  # why the results left --results for a temporary folder (the first failure)

    @property
    def csv_path(self) -> Path:
        return self.path.with_suffix(".csv")

    def save(self, results: ResultSet) -> None:
        """Write the JSON, then the CSV. When the folder cannot take them (no space, a quota, a read-only remount,
        a folder gone), the measurement is not lost: it goes to a temporary folder (``moved`` says why; the next
        saves go there too), and only when that fails as well is it an error."""
        text = to_json(results)
        try:
            _atomic_write(self.path, text)
            self.saved = True  # the JSON is the record: kept even if an interrupt stops the CSV beside it
            _atomic_write(self.csv_path, to_csv(results))
        except OSError as exc:
            if self.moved is not None:
                raise ResultsError(
                    f"cannot save the results in '{self.path.parent}' either ({exc.strerror or exc}), after "
                    f"{self.moved}; free some space and re-run"
                ) from None
            self._move(exc, len(text.encode()))
            self.save(results)

    def _move(self, exc: OSError, needed: int) -> None:
        import tempfile

        if not self.saved:
            try:
                self.path.unlink(missing_ok=True)  # the empty name claimed in the folder that failed
            except OSError:
                pass
        where = Path(tempfile.mkdtemp(prefix="pdl-results-"))
        self.moved = (
            f"--results '{self.directory}' could not take them ({exc.strerror or exc}; the results need {needed:,} bytes)"
        )
        self.path = where / self.path.name

    def not_saved(self) -> str | None:
        """One line when the results could not go where asked: why, and where they are instead; None otherwise."""
        if self.moved is None:
            return None
        return (
            f"{self.moved}: they are saved in {self.path} (and .csv) instead; `pdl report {self.path}` reads them; "
            "free space there, or pass another --results"
        )

    def discard_if_unused(self) -> None:
        """Remove the claimed name when nothing was ever saved into it (an error before the first point)."""
        if not self.saved:
            self.path.unlink(missing_ok=True)


def _atomic_write(path: Path, text: str) -> None:
    """Write a temporary file beside ``path``, then rename it over: a reader sees the old file or the new one.

    The temporary file is made with mode 0666 and the user's umask, as ``open`` would (``tempfile.mkstemp``
    would make it 0600, and the rename would keep that).
    """
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load(path: Path) -> ResultSet:
    """A results file of this pdl's version or an older one (migrated on load, see ``records.upgrade``).

    Within ``bounds``: at most MAX_RESULTS_BYTES, nested at most MAX_NESTING deep; whatever the file holds, the
    outcome is a ResultSet or one ResultsError naming the file (values quoted to ``bounds.QUOTE_CHARS``)."""
    try:
        size = Path(path).stat().st_size
        if size > MAX_RESULTS_BYTES:
            raise ResultsError(
                f"'{path}' is not a pdl results file ({size:,} bytes; pdl reads at most {MAX_RESULTS_BYTES:,}); "
                "pass a file written by pdl"
            )
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"results file '{path}' does not exist; pass a file written by pdl (see results/)") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: JSON's, and int('9' * 5000)'s
        raise ResultsError(
            f"results file '{path}' is damaged or not JSON ({cut(str(exc), REASON_CHARS)}); re-run the measurement"
        ) from None
    except RecursionError:  # JSON nested deeper than Python's stack: nothing pdl wrote
        raise ResultsError(
            f"'{path}' is not a pdl results file (JSON nested too deep to read); pass a file written by pdl"
        ) from None
    if nesting(data) > MAX_NESTING:
        raise ResultsError(
            f"'{path}' is not a pdl results file (JSON nested more than {MAX_NESTING} deep); pass a file written by pdl"
        )
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ResultsError(f'\'{path}\' is not a pdl results file (no "schema": "{SCHEMA}"); pass a file written by pdl')
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ResultsError(
            f"results file '{path}' is damaged (version {quote(version)} is not a schema version); re-run the measurement"
        )
    if version > VERSION:
        raise ResultsError(
            f"'{path}' has results schema version {cut(str(version))}, from a newer pdl; this pdl reads versions 1 to "
            f"{VERSION}: upgrade pdl to read it"
        )
    try:
        return ResultSet.from_dict(upgrade(data))
    except RecursionError:
        raise ResultsError(f"'{path}' is not a pdl results file (a field nested too deep); pass a file written by pdl") from None
    except (TypeError, KeyError, ValueError, AttributeError, IndexError, OverflowError) as exc:
        # records.upgrade/from_dict index into the file's dicts and lists as pdl wrote them: a field of another
        # type ends there as one of these
        reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # a KeyError's str() is quoted
        raise ResultsError(
            f"results file '{path}' is damaged (missing or wrong field: {cut(str(reason), REASON_CHARS)}); re-run the measurement"
        ) from None


def load_folder(directory: Path) -> list[tuple[Path, ResultSet]]:
    """Every results file in ``directory`` (its ``*.json``), loaded; one that is not is one line naming it."""
    if not directory.is_dir():
        raise ResultsError(f"--history '{directory}': not a folder; pass the folder your results files are saved in")
    return [(path, load(path)) for path in sorted(directory.glob("*.json"))]


def newest(directory: Path) -> Path:
    files = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime) if directory.is_dir() else []
    if not files:
        raise ResultsError(f"no results files in '{directory}'; run `pdl run` or a sweep first, or name a file")
    return files[-1]
