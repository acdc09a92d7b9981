"""Bounds on input from outside, named once: what an image, a pipeline YAML, a list, a results file or a loader
state may cost before pdl refuses it, and how much of a value an error line quotes.

Every parser of outside input checks against these before it builds anything (a decoded image, a YAML value
graph, a Python object tree), so a hostile file costs a few header bytes and one error line, never the memory
or time its contents claim.
"""

from __future__ import annotations

import os
import reprlib
from collections.abc import Iterable, Mapping

# Images (codec.check_decodable). A chunk or segment never runs past the file's own end; the decoded RGB array
# the header declares (height × width × 3 bytes) is at most this many bytes, overridable in MB by the
# environment variable below (a real 1 GiB image: raise it; a small worker: lower it).
MAX_DECODED_BYTES = 1 << 30
MAX_DECODED_ENV = "PDL_MAX_DECODED_MB"

# Pipeline YAML (pipeline.load_pipeline): the file's size, and the value it builds counted with every alias
# expanded (a "billion laughs" file is 300 bytes that expand to 10^8 nodes) and its nesting depth.
MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_NODES = 10_000
MAX_NESTING = 32  # YAML mappings/lists inside each other, and JSON objects/arrays (results, states) likewise

# Results files (bench.files.load): the file's size; depth is MAX_NESTING (pdl writes 5 levels at most).
MAX_RESULTS_BYTES = 256 << 20

# Lists of images (lists.read_list): one line (a path is at most 4096 bytes on Linux; the rest are labels).
MAX_LINE_CHARS = 1 << 16

# Error lines: a value from a file is quoted to at most this many characters; a library's own message, which
# may quote the value again, to REASON_CHARS.
QUOTE_CHARS = 80
REASON_CHARS = 300


def max_decoded_bytes() -> int:
    """MAX_DECODED_BYTES, or ``PDL_MAX_DECODED_MB`` megabytes where that is set to a positive whole number."""
    value = os.environ.get(MAX_DECODED_ENV, "")
    try:
        mb = int(value)
    except ValueError:
        return MAX_DECODED_BYTES
    return mb << 20 if mb > 0 else MAX_DECODED_BYTES


def cut(text: str, limit: int = QUOTE_CHARS) -> str:
    """``text`` on one line, at most ``limit`` characters: the rest is replaced by "…(N more)"."""
    flat = " ".join(text.split()) if ("\n" in text or "\r" in text) else text
    if len(flat) <= limit:
        return flat
    return f"{flat[:limit]}…({len(flat) - limit:,} more)"


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 3, 4, 4, 4, 4
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = QUOTE_CHARS


def quote(value: object, limit: int = QUOTE_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, without ever building the whole repr: a value made of
    shared references (a YAML alias bomb) or a huge string costs only what is shown."""
    try:
        text = _REPR.repr(value)
    except Exception:  # a repr that raises: the type is still worth naming
        text = f"<{type(value).__name__}>"
    return cut(text, limit)


def nesting(value: object, limit: int = MAX_NESTING) -> int:
    """How deep ``value``'s dicts and lists nest (a scalar: 0), counted without recursion and stopping once past
    ``limit`` (then ``limit + 1``): safe on any JSON-like tree, however deep or wide."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        children: Iterable[object]
        if isinstance(node, Mapping):
            children = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        depth += 1
        if depth > limit:
            return limit + 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest
