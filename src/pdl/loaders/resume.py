"""Resuming mid-epoch: what a loader's state holds, and the check that a state belongs to the work at hand.

A pdl batch depends only on (seed, epoch, image index) and the epoch's plan (dataset length, batch size,
shuffle, drop_last, shard), never on the loader or its worker count. So the state is small — the epoch and how
many of its batches were handed out, plus what identifies the work — and any pdl loader given it yields exactly
the batches the original would have yielded next.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, TypedDict, cast

from ..data.bounds import quote
from ..data.protocol import Dataset, describe
from ..errors import ConfigError
from .spec import LoaderSpec

FORMAT = "pdl.loader-state/1"
IDENTITY = ("seed", "batch_size", "shuffle", "drop_last", "rank", "world_size")  # LoaderSpec fields that shape the plan
_SAMPLED = 64  # items named in the fingerprint: enough to tell datasets apart, cheap for millions of items


class State(TypedDict):
    format: str
    epoch: int  # the epoch to carry on in
    batches: int  # of it, handed out already
    dataset_length: int
    dataset_fingerprint: str
    seed: int
    batch_size: int
    shuffle: bool
    drop_last: bool
    rank: int
    world_size: int


def fingerprint(dataset: Dataset) -> str:
    """A short hash of the dataset's length and what it calls up to 64 items spread over it (paths for a folder)."""
    n = len(dataset)
    picks = sorted({i * n // _SAMPLED for i in range(_SAMPLED)} if n > _SAMPLED else set(range(n)))
    h = hashlib.blake2b(digest_size=8)
    h.update(str(n).encode())
    for i in picks:
        h.update(b"\0" + describe(dataset, i).encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def make_state(dataset: Dataset, spec: LoaderSpec, epoch: int, batches: int) -> State:
    where = {"format": FORMAT, "epoch": epoch, "batches": batches}
    work = {"dataset_length": len(dataset), "dataset_fingerprint": fingerprint(dataset)}
    return cast(State, {**where, **work, **{key: getattr(spec, key) for key in IDENTITY}})


def check_state(state: Mapping[str, Any], dataset: Dataset, spec: LoaderSpec, per_epoch: int) -> tuple[int, int]:
    """(epoch, batches handed out) from ``state``, after checking it describes this work; else one line naming
    the first field that differs, both values (quoted to ``bounds.QUOTE_CHARS``), and the fix. Whatever the
    state holds (arrays, huge strings, other types), this is the one error: never another exception."""
    fmt = state.get("format") if isinstance(state, Mapping) else None
    if not isinstance(state, Mapping) or not _same(fmt, FORMAT):
        found = quote(fmt) if isinstance(state, Mapping) else type(state).__name__
        raise ConfigError(
            f"load_state_dict: not a pdl loader state (format {found}, expected {FORMAT!r}); pass what state_dict() returned"
        )
    mine = make_state(dataset, spec, 0, 0)
    for key in ("dataset_length", "dataset_fingerprint", *IDENTITY):
        if not _same(state.get(key), mine[key]):  # type: ignore[literal-required]
            what = "the dataset" if key.startswith("dataset") else f"`{key}`"
            raise ConfigError(
                f"load_state_dict: the state is of other work: {key} is {quote(state.get(key))} in the state, "
                f"{mine[key]!r} here (pass {what} the state was taken with)"  # type: ignore[literal-required]
            )
    epoch, batches = state.get("epoch"), state.get("batches")
    if not (_whole(epoch) and _whole(batches) and batches <= per_epoch):  # type: ignore[operator]
        raise ConfigError(
            f"load_state_dict: epoch {quote(epoch)}, batches {quote(batches)} is no position in an epoch of {per_epoch} "
            "batches; pass what state_dict() returned"
        )
    assert isinstance(epoch, int) and isinstance(batches, int)
    return (epoch + 1, 0) if batches == per_epoch else (epoch, batches)


def _same(found: object, expected: object) -> bool:
    """``found == expected`` for a value read back from a state of any type: a bool is no int here, and an array
    (whose == is elementwise) or any other type is simply not the same."""
    return type(found) is type(expected) and found == expected


def _whole(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63  # an epoch fits numpy's int64
