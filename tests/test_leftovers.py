"""The check after every test: a test that leaves a process fails alone, naming it, and the process is stopped."""

from __future__ import annotations

import pytest

from .processes import live_children

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.timeout(60)

INNER = """
import subprocess, sys, time

LEAKED = []

def test_leaks_a_sleeper():
    LEAKED.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)  # pdl-leak-marker"]))

def test_after_the_leak_is_clean():
    time.sleep(0.1)

def test_the_leaked_process_was_stopped():
    assert LEAKED and LEAKED[0].poll() is not None
"""


def test_a_leak_fails_only_the_test_that_left_it(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("from tests.conftest import nothing_left_behind  # noqa: F401\n")
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=3, errors=1)  # the leak's teardown errs; the tests after it pass
    text = result.stdout.str()
    assert "a test left child processes alive (now stopped): pid " in text
    assert "pdl-leak-marker" in text  # named by its command line
    assert "ERROR test_inner.py::test_leaks_a_sleeper" in text
    assert live_children() == []
