"""Lists of images: a .csv/.tsv with a header naming the path column (and optionally a label column), or a .txt
with one path a line. Relative paths resolve against the list's folder.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DatasetError
from .bounds import MAX_LINE_CHARS, REASON_CHARS, cut, quote

LIST_SUFFIXES = (".csv", ".tsv", ".txt")
PATH_COLUMNS = ("path", "file", "filename", "image")  # the first header (any case) among these holds the paths
LABEL_COLUMNS = ("label", "class", "target")  # and the first among these, if any, the labels


@dataclass(frozen=True)
class ImageList:
    """The rows of a list: absolute paths, and labels as written (None: the list has no label column)."""

    source: Path
    paths: tuple[str, ...]
    labels: tuple[str, ...] | None


def is_list(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in LIST_SUFFIXES


def read_list(source: Path) -> ImageList:
    """The list's rows; a list with no rows, or a table with no path column, is a DatasetError naming the fix."""
    base = source.parent
    try:
        text = source.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(
            f"`root` '{source}': cannot read the list ({cut(str(exc), REASON_CHARS)}); pass a UTF-8 text file"
        ) from None
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if len(line) > MAX_LINE_CHARS:
            raise DatasetError(
                f"`root` '{source}', line {number}: {len(line):,} characters, more than a list's {MAX_LINE_CHARS:,} "
                f"a line ({quote(line)}); one path (and label) a line"
            )
        if "\0" in line:
            raise DatasetError(f"`root` '{source}', line {number}: a NUL byte ({quote(line)}); no path holds one: fix the line")
    if source.suffix.lower() == ".txt":
        rows = [line.strip() for line in lines]
        paths = [_resolve(base, p) for p in rows if p and not p.startswith("#")]
        labels = None
    else:
        paths, labels = _table(source, lines, "\t" if source.suffix.lower() == ".tsv" else ",")
    if not paths:
        raise DatasetError(f"`root` '{source}': the list has no rows; add the images' paths, one a line")
    return ImageList(source, tuple(paths), None if labels is None else tuple(labels))


def _table(source: Path, lines: list[str], delimiter: str) -> tuple[list[str], list[str] | None]:
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        return _rows(source, reader, delimiter)
    except csv.Error as exc:  # a quoted field that never ends (and grows past csv's field limit)
        raise DatasetError(
            f"`root` '{source}', line {reader.line_num}: cannot read the row ({cut(str(exc), REASON_CHARS)}); "
            "close its quotes or delete the row"
        ) from None


def _rows(source: Path, reader: Any, delimiter: str) -> tuple[list[str], list[str] | None]:
    header = next(reader, None)
    if header is None:
        raise DatasetError(
            f"`root` '{source}': the list is empty; give a header row ({PATH_COLUMNS[0]},label) and one row an image"
        )
    names = [h.strip().lower() for h in header]
    path_col = next((names.index(c) for c in PATH_COLUMNS if c in names), None)
    if path_col is None:
        raise DatasetError(
            f"`root` '{source}': no path column in the header ({cut(delimiter.join(header))}); "
            f"name the column of paths one of: {', '.join(PATH_COLUMNS)}"
        )
    label_col = next((names.index(c) for c in LABEL_COLUMNS if c in names), None)
    paths: list[str] = []
    labels: list[str] = []
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue  # a blank line
        if len(row) <= max(path_col, label_col or 0) or not row[path_col].strip():
            raise DatasetError(
                f"`root` '{source}', line {line}: no {cut(header[path_col])} (or label) in this row; fill it in or delete the row"
            )
        paths.append(_resolve(source.parent, row[path_col].strip()))
        if label_col is not None:
            labels.append(row[label_col].strip())
    return paths, (labels if label_col is not None else None)


def _resolve(base: Path, path: str) -> str:
    return os.path.normpath(base / os.path.expanduser(path))  # an absolute path stays as it is


LABEL_RANGE = (-(2**63), 2**63 - 1)  # whole-number labels are stored as int64


def class_indices(labels: tuple[str, ...], source: Path | None = None) -> tuple[tuple[str, ...], list[int]]:
    """(class names, each row's label): whole numbers (within int64) are kept as they are; any other labels are
    the indices of their names in sorted order."""
    try:
        ints = [int(label) for label in labels]
    except ValueError:  # a name, or a number of more digits than int() reads
        names = sorted(set(labels))
        index = {name: i for i, name in enumerate(names)}
        return tuple(names), [index[label] for label in labels]
    low, high = LABEL_RANGE
    for row, value in enumerate(ints):
        if not low <= value <= high:
            raise DatasetError(
                f"`root` '{source or 'list'}': label {cut(labels[row])} of row {row + 1} does not fit in 64 bits; "
                "use class names or numbers below 2^63"
            )
    return tuple(str(i) for i in sorted(set(ints))), ints
