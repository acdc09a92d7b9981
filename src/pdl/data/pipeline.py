"""Augmentation pipelines: friendly YAML (or albumentations' own serialized format) → albumentations Compose.

YAML is read with the safe loader and a name resolves only to an albumentations transform class: nothing in a
config file is imported or evaluated.
"""

from __future__ import annotations

import difflib
import random
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .. import _env  # noqa: F401  (NO_ALBUMENTATIONS_UPDATE before albumentations loads)
from .._augment import require as require_augmentation_library
from ..errors import ConfigError
from .bounds import MAX_CONFIG_BYTES, MAX_DECODED_ENV, MAX_NESTING, MAX_YAML_NODES, REASON_CHARS, cut, max_decoded_bytes, quote

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "configs" / "pipelines"  # pdl/configs: package data
LEVELS = ("light", "medium", "heavy", "extreme")  # shipped levels, in order of complexity
PROBE_SHAPES = ((480, 640, 3), (640, 480, 3))  # two input sizes: a fixed-size pipeline maps both to one shape


@dataclass(frozen=True)
class Pipeline:
    """A named augmentation pipeline. ``spec`` is albumentations' serialized dict, rebuilt in each worker."""

    name: str
    description: str
    source: str
    spec: dict[str, Any] = field(repr=False)
    output_shape: tuple[int, ...] | None = None  # None: could not be probed
    output_dtype: str = "uint8"

    @cached_property
    def compose(self) -> Any:
        import albumentations as A

        return A.from_dict(self.spec)

    @property
    def built(self) -> bool:
        """Whether the albumentations objects exist yet (they are built on first use, once per process)."""
        return "compose" in self.__dict__

    @property
    def min_input_size(self) -> tuple[int, int] | None:
        """The (height, width) the first transform reduces every image to, so a decoder may hand over less.

        Counts only a first transform that always runs (``p`` = 1, in a Compose with ``p`` = 1) and only shrinks
        to a size known before seeing the image: ``Resize(height, width)`` → (height, width), and
        ``SmallestMaxSize(max_size=s)`` → (s, s) (the shorter side stays ≥ s; a list of sizes → the largest).
        None for anything else first, ``LongestMaxSize`` included: its target depends on the aspect ratio.
        Derived from ``spec`` on each call, so it pickles with the pipeline.
        """
        top = self.spec.get("transform", {})
        transforms = top.get("transforms") or [None]
        first = transforms[0]
        if not isinstance(first, dict) or top.get("p", 1.0) < 1 or first.get("p", 1.0) < 1:
            return None
        kind = str(first.get("__class_fullname__", "")).rsplit(".", 1)[-1]
        if kind == "Resize":
            return int(first["height"]), int(first["width"])
        if kind == "SmallestMaxSize" and first.get("max_size_hw") is None and first.get("max_size") is not None:
            sizes = first["max_size"]
            side = max(sizes) if isinstance(sizes, (list, tuple)) else sizes
            return int(side), int(side)
        return None

    def __call__(self, image: np.ndarray, seed: int) -> np.ndarray:
        """Augment one image with randomness drawn only from ``seed``: same seed, same output, any process."""
        compose = self.compose
        compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
        return compose(image=image)["image"]  # type: ignore[no-any-return]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("compose", None)  # rebuilt lazily from spec on the other side
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __copy__(self) -> Pipeline:
        """A copy with its own albumentations objects (built on first use): one per thread."""
        clone = object.__new__(Pipeline)
        clone.__setstate__(self.__getstate__())
        return clone


def shipped_names() -> list[str]:
    names = {p.stem for p in SHIPPED_DIR.glob("*.yaml")}
    return [n for n in LEVELS if n in names] + sorted(names - set(LEVELS))


def resolve(name_or_path: str) -> Path:
    """A shipped level's name, or a path to a YAML file."""
    candidate = Path(name_or_path)
    shown = cut(name_or_path)
    if candidate.suffix.lower() in (".yaml", ".yml") or "/" in name_or_path:
        try:
            found = candidate.is_file()
        except (OSError, ValueError):  # a name too long for the system, or a NUL byte in it
            found = False
        if not found:
            raise ConfigError(
                f"pipeline file '{shown}' does not exist; pass a shipped name ({', '.join(shipped_names())}) or a YAML path"
            )
        return candidate
    if "\0" in name_or_path or len(name_or_path) > 255:
        raise ConfigError(f"`pipeline` '{shown}' is no pipeline name; shipped: {', '.join(shipped_names())}")
    shipped = SHIPPED_DIR / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    close = difflib.get_close_matches(name_or_path, shipped_names(), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ConfigError(
        f"`pipeline` '{shown}' is neither a shipped pipeline nor a YAML file; {hint}shipped: {', '.join(shipped_names())}"
    )


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a document nested deeper than ``bounds.MAX_NESTING`` while it is composed
    (PyYAML composes recursively: 3,000 levels would be a RecursionError)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise _TooBig(f"nested more than {MAX_NESTING} levels deep", self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_yaml_timestamp(self, node: Any) -> Any:
        """A ``!!timestamp`` that is no timestamp: PyYAML would call ``.groupdict()`` on None (found by Hypothesis)."""
        if not isinstance(node.value, str) or self.timestamp_regexp.match(node.value) is None:
            raise yaml.constructor.ConstructorError(
                None, None, f"!!timestamp {quote(node.value)} is not a date or time", node.start_mark
            )
        return super().construct_yaml_timestamp(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:timestamp", _BoundedLoader.construct_yaml_timestamp)


class _TooBig(Exception):
    def __init__(self, what: str, mark: Any = None) -> None:
        super().__init__(what)
        self.what, self.mark = what, mark


def _expanded(root: yaml.Node) -> None:
    """Refuse a document whose value, every alias expanded, has more than ``bounds.MAX_YAML_NODES`` nodes or nests
    deeper than ``bounds.MAX_NESTING``, or that refers to itself: counted on the composed node graph (each node
    once), before anything is built from it, so a "billion laughs" file costs its few hundred nodes."""
    size: dict[int, tuple[int, int]] = {}  # id(node) → (nodes, depth) with aliases expanded
    busy: set[int] = set()

    def walk(node: yaml.Node) -> tuple[int, int]:
        key = id(node)
        if key in size:
            return size[key]
        if key in busy:
            raise _TooBig("an alias refers to a value that holds it (a cycle)", node.start_mark)
        busy.add(key)
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        nodes, depth = 1, 0
        for child in children:
            n, d = walk(child)
            nodes, depth = nodes + n, max(depth, d)
        busy.discard(key)
        size[key] = (nodes, depth + 1)
        if nodes > MAX_YAML_NODES:
            raise _TooBig(f"more than {MAX_YAML_NODES:,} values with its aliases expanded", node.start_mark)
        if depth + 1 > MAX_NESTING:
            raise _TooBig(f"nested more than {MAX_NESTING} levels deep with its aliases expanded", node.start_mark)
        return size[key]

    walk(root)


def read_yaml(path: Path) -> Any:
    """The YAML document in ``path``, within the bounds in ``bounds`` (size, nodes with aliases expanded,
    nesting); anything else is one ConfigError naming the file (and the line where PyYAML knows it)."""
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"{path}: {path.stat().st_size:,} bytes; a pipeline file is at most {MAX_CONFIG_BYTES:,}: pass a pipeline file"
            )
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: cannot read pipeline: {cut(str(exc), REASON_CHARS)}; pass a UTF-8 YAML file") from None
    loader: _BoundedLoader | None = None
    try:
        loader = _BoundedLoader(text)  # its reader refuses control characters here, at once
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded(node)
        return loader.construct_document(node)
    except _TooBig as exc:
        where = f"{path}:{exc.mark.line + 1}:{exc.mark.column + 1}" if exc.mark else str(path)
        raise ConfigError(f"{where}: the YAML is {exc.what}; a pipeline is a short list of transforms") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: YAML syntax error: {cut(str(exc.problem), REASON_CHARS)}; fix the file's syntax") from None
    # int('9' * 5000); a bad !!timestamp value (ValueError), or one the timestamp pattern does not match at all
    # (PyYAML's constructor then calls .groupdict() on None: AttributeError; found by Hypothesis in CI)
    except (yaml.YAMLError, ValueError, OverflowError, TypeError, AttributeError, KeyError, IndexError) as exc:
        raise ConfigError(f"{path}: cannot read pipeline: {cut(str(exc), REASON_CHARS)}; fix the value") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_pipeline(name_or_path: str | Path) -> Pipeline:
    require_augmentation_library()  # one line naming both install commands, before albumentations is first imported
    path = resolve(str(name_or_path))
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a pipeline file must be a mapping with 'name' and 'transforms'; got {type(data).__name__}")
    if "transform" in data and isinstance(data["transform"], dict):
        spec = _check_serialized(path, data)
        name, description = path.stem, str(data.get("description", "albumentations serialized pipeline"))
    else:
        transforms = data.get("transforms")
        if not isinstance(transforms, list) or not transforms:
            raise ConfigError(f"{path}: 'transforms' must be a non-empty list of albumentations transforms")
        built = [_build(path, f"transforms[{i}]", entry) for i, entry in enumerate(transforms)]
        spec = _to_dict(built)
        name, description = str(data.get("name") or path.stem), str(data.get("description", ""))
    shape, dtype = _probe(path, spec)
    return Pipeline(name, description, str(path), spec, shape, dtype)


def _transform_class(path: Path, where: str, name: str) -> type:
    import albumentations as A
    from albumentations.core.composition import BaseCompose
    from albumentations.core.transforms_interface import BasicTransform

    cls = getattr(A, name, None) if name.isidentifier() and not name.startswith("_") else None
    if isinstance(cls, type) and issubclass(cls, (BasicTransform, BaseCompose)) and name != "Lambda":
        return cls
    known = [n for n in dir(A) if isinstance(getattr(A, n), type) and issubclass(getattr(A, n), (BasicTransform, BaseCompose))]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6) if len(name) <= 100 else []
    hint = f"; did you mean {', '.join(close)}?" if close else "; see albumentations' list of transforms"
    raise ConfigError(f"{path}: {cut(where, REASON_CHARS)}: unknown transform '{cut(name)}'{hint}")


def _build(path: Path, where: str, entry: Any) -> Any:
    args: dict[str, Any]
    if isinstance(entry, str):
        name, args = entry, {}
    elif isinstance(entry, dict) and len(entry) == 1:
        name, args = next(iter(entry.items()))
        args = {} if args is None else args
    else:
        raise ConfigError(f"{path}: {where}: write each transform as 'Name: {{arg: value}}' or a bare 'Name'; got {quote(entry)}")
    if not isinstance(args, dict):
        raise ConfigError(f"{path}: {where} ({cut(str(name))}): arguments must be a mapping, got {quote(args)}")
    cls = _transform_class(path, where, str(name))
    if "transforms" in args:
        nested = args["transforms"]
        if not isinstance(nested, list):
            raise ConfigError(f"{path}: {where} ({name}): 'transforms' must be a list, got {quote(nested)}")
        args = {**args, "transforms": [_build(path, f"{where}.transforms[{i}]", e) for i, e in enumerate(nested)]}
    try:
        return cls(**args)
    except Exception as exc:  # albumentations' validation (pydantic) or a TypeError for unknown arguments
        raise ConfigError(f"{path}: {where} ({name}): {_one_line(exc)}") from None


def _to_dict(transforms: list[Any]) -> dict[str, Any]:
    import albumentations as A

    return A.to_dict(A.Compose(transforms))  # type: ignore[no-any-return]


def _check_serialized(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """albumentations' own format: every class it names must be one of its registered transforms."""
    import albumentations as A
    from albumentations.core.serialization import SERIALIZABLE_REGISTRY

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            cls = node.get("__class_fullname__")
            if cls is not None and cls not in SERIALIZABLE_REGISTRY:
                short = str(cls).rsplit(".", 1)[-1]
                _transform_class(path, where, short)  # raises with close matches
            for key, value in node.items():
                walk(value, f"{where}.{key}" if where else str(key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(data["transform"], "transform")
    try:
        A.from_dict(data)
    except Exception as exc:
        raise ConfigError(f"{path}: {_one_line(exc)}") from None
    return data


# Arguments that set the size of a transform's output: (height, width) pairs, and sides (an int or [h, w]).
_SIZE_PAIRS = (("height", "width"), ("min_height", "min_width"))
_SIDES = ("size", "max_size", "min_size", "max_size_hw")
_HW = ("size", "max_size_hw")  # of these, a pair is (height, width)


def _sides(node: dict[str, Any]) -> list[tuple[str, int, int]]:
    """The output sizes a transform's arguments ask for: (argument, height, width)."""
    found = []
    for h, w in _SIZE_PAIRS:
        if isinstance(node.get(h), int) and isinstance(node.get(w), int):
            found.append((f"{h}/{w}", node[h], node[w]))
    for key in _SIDES:
        value = node.get(key)
        sides = value if isinstance(value, list | tuple) else [value]
        ints = [v for v in sides if isinstance(v, int) and not isinstance(v, bool)]
        if key in _HW and len(ints) == len(sides) == 2:  # (height, width)
            found.append((key, ints[0], ints[1]))
        elif ints:  # one side: the other may be as long (LongestMaxSize); a list of choices: its largest
            found.append((key, max(ints), max(ints)))
    return found


def _check_sizes(path: Path, spec: dict[str, Any]) -> None:
    """Refuse a transform whose output would be past ``bounds.max_decoded_bytes`` for one RGB image, before the
    probe runs it (Resize to 100000×100000 asks OpenCV for 30 GB)."""
    limit = max_decoded_bytes()
    stack: list[Any] = [spec.get("transform", spec)]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for arg, h, w in _sides(node):
                if h * w * 3 > limit:
                    name = str(node.get("__class_fullname__", "transform")).rsplit(".", 1)[-1]
                    raise ConfigError(
                        f"{path}: {name} {arg} {cut(str(h))}×{cut(str(w))}: one RGB image that size is past the bound "
                        f"of {limit >> 20} MB ({MAX_DECODED_ENV}); give a smaller size"
                    )
            stack += [v for v in node.values() if isinstance(v, dict | list)]
        elif isinstance(node, list):
            stack += node


def _probe(path: Path, spec: dict[str, Any]) -> tuple[tuple[int, ...] | None, str]:
    """Run the pipeline on two input sizes: a pipeline that does not end at a fixed size cannot make batches."""
    import albumentations as A

    _check_sizes(path, spec)

    try:  # a transform may take arguments it then refuses to be rebuilt from (ColorJitter's hue past 0.5)
        compose = A.from_dict(spec)
    except Exception as exc:
        raise ConfigError(f"{path}: the pipeline cannot be rebuilt from its own description: {_one_line(exc)}") from None
    shapes, dtype = [], "uint8"
    for i, shape in enumerate(PROBE_SHAPES):
        compose.set_random_state(np.random.default_rng(i), random.Random(i))
        try:
            out = compose(image=np.full(shape, 127, np.uint8))["image"]
        except Exception:
            return None, dtype  # e.g. a crop larger than the probe: the user's images may be larger
        shapes.append(tuple(int(d) for d in out.shape))
        dtype = str(out.dtype)
    if shapes[0] != shapes[1]:
        raise ConfigError(
            f"{path}: the pipeline's output size varies with the input ({_hw(shapes[0])} and {_hw(shapes[1])}), so "
            "batches cannot stack; end it with a fixed-size transform such as Resize, CenterCrop or RandomCrop"
        )
    return shapes[0], dtype


def _hw(shape: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in shape)


def _one_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    text = text.split(" For further information visit")[0]
    return cut(f"{type(exc).__name__}: {text}", REASON_CHARS)
