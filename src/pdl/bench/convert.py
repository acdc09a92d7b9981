"""A typed record from the JSON-able dict a results file holds: every field checked against its annotation, so a
damaged or hostile file is refused naming the field (``points[1].wall_s[0]: expected a finite number``).

Generic over frozen dataclasses: lists become tuples, nested records are built in turn, ``Optional`` and unions
of one type and None are read, and a float must be finite (Python's json reads NaN and Infinity; pdl never writes
them). Written by hand rather than with cattrs or msgspec: both coerce or accept what this refuses (cattrs turns
``"3"`` and ``3.7`` into ``3``; msgspec accepts NaN unless every float field carries a constraint), and the fuzzed
results parser's one-line messages name the path as here.
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

R = TypeVar("R")


def build(cls: type[R], data: Any, where: str) -> R:
    """``cls`` from ``data``, each field checked and converted by its annotation (lists become tuples)."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{where or 'the file'}: expected an object, got {type(data).__name__}")
    hints = get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], f"{where}{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise KeyError(f"{where}{f.name}")
    return cls(**kwargs)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _convert(next(a for a in args if a is not type(None)), value, where)
    if tp is Any:
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple) or (args[-1] is not Ellipsis and len(value) != len(args)):
            raise TypeError(f"{where}: expected a list, got {value!r}"[:200])
        kinds = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
        return tuple(_convert(t, v, f"{where}[{i}]") for i, (t, v) in enumerate(zip(kinds, value, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected an object, got {type(value).__name__}")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and is_dataclass(tp):
        return build(tp, value, f"{where}.")
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):  # Python's json reads NaN and Infinity; pdl never writes them
            raise ValueError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    raise TypeError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}"[:200])
