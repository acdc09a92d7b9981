"""Hostile loader states (issue #32): whatever ``load_state_dict`` is given — other types, arrays, huge values,
missing fields — it resumes, or raises one ConfigError line naming the field, with values quoted to a bound."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdl.data.bounds import QUOTE_CHARS
from pdl.errors import PdlError
from pdl.loaders import LoaderSpec
from pdl.loaders.resume import FORMAT, check_state, make_state

from ..conftest import examples


class Items:
    def __len__(self) -> int:
        return 20

    def __getitem__(self, i: int) -> np.ndarray:
        return np.zeros((2, 2, 3), np.uint8)


SPEC = LoaderSpec(batch_size=5, shuffle=True, seed=3)
GOOD = dict(make_state(Items(), SPEC, 1, 2))

_VALUES = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=20)
    | st.just("x" * 10_000) | st.just(np.arange(3)) | st.just(np.int64(3)) | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2) | st.just(FORMAT) | st.just(b"\0" * 5000)
)  # fmt: skip


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from([*GOOD, "extra"]), _VALUES, max_size=4), drop=st.sets(st.sampled_from(list(GOOD))))
def test_a_state_resumes_or_gives_one_line(changes: dict[str, object], drop: set[str]) -> None:
    state = {k: v for k, v in {**GOOD, **changes}.items() if k not in drop}
    try:
        epoch, batches = check_state(state, Items(), SPEC, 4)  # type: ignore[arg-type]
    except PdlError as exc:
        text = str(exc)
        assert "\n" not in text and text.startswith("load_state_dict: ") and len(text) < 200 + 3 * QUOTE_CHARS, text
    else:
        assert isinstance(epoch, int) and 0 <= batches < 4


@settings(max_examples=examples(20), deadline=None)
@given(state=_VALUES)
def test_anything_but_a_mapping_is_one_line(state: object) -> None:
    try:
        check_state(state, Items(), SPEC, 4)  # type: ignore[arg-type]
    except PdlError as exc:
        assert "not a pdl loader state" in str(exc) and "\n" not in str(exc)
