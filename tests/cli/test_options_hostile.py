"""Hostile CLI option values (issue #32): numbers a generator picks, through typer's CliRunner as a user
types them. Every one ends in exit 2 and one error line (the inputs folder is empty, so a value that is valid
still ends there, before any work), never a traceback or a value echoed whole."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pdl.cli import app

runner = CliRunner()
NUMERIC = ["--workers", "--batch-size", "--prefetch", "--chunk-size", "--repeats", "--limit", "--seed", "--rank",
           "--world-size"]  # fmt: skip
NUMBERS = st.sampled_from(["-1", "0", "-0", "1e309", "nan", "inf", "-inf", "9" * 400, "0x10", "1_0", "１", "", " ", "2.5", "1e-320",
                           "\0", "-" + "9" * 30]) | st.integers(-(2**70), 2**70).map(str) | st.text(max_size=6)  # fmt: skip
