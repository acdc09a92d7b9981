"""Shared fixtures: small generated image sets, and a check after every test that nothing was left behind. How the
suite runs: in parallel under pytest-xdist (a worker per usable core and one more, at most 4; the tests that must
run alone wait for the others), and the property tests' Hypothesis profiles."""

from __future__ import annotations

import faulthandler
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
import pytest
from hypothesis import settings

import pdl  # first: sets NO_ALBUMENTATIONS_UPDATE before anything imports albumentations
from pdl.data.synth import generate

from .processes import check_nothing_left, shm_entries, stop_leftovers

# --- Hypothesis: the number of examples -------------------------------------------------------------------------
# Each property test names its own number of examples through examples(n): n in the suite (profile "ci", the
# default), NIGHTLY_FACTOR times n in a long run, HYPOTHESIS_PROFILE=nightly (docs/measuring.md, "Hostile input");
# a test that names no number gets the profile's (100 in "ci", as Hypothesis's default). A failure prints the blob
# that replays it (@reproduce_failure).
NIGHTLY_FACTOR = 20
settings.register_profile("ci", print_blob=True)
settings.register_profile(
    "nightly", settings.get_profile("ci"), max_examples=NIGHTLY_FACTOR * settings.get_profile("ci").max_examples
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def examples(ci: int) -> int:
    """A property test's number of examples: ``ci`` under the "ci" profile, more under a longer one ("nightly")."""
    return ci * settings.default.max_examples // settings.get_profile("ci").max_examples


# --- pytest-xdist: the suite in parallel --------------------------------------------------------------------------
MAX_WORKERS = 4


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject's addopts): one worker more than the cores this process may use, as pdl counts them
    (affinity, cgroup quota, PDL_MAX_CPUS), at most MAX_WORKERS. Much of the suite's time is spent waiting for the
    processes it starts (Ray's above all): on the 2-core VM (2026-12-08, at 333e8cc, fresh clone and TMPDIR), one
    process ran it in 346 s, 2 workers in 217 and 226 s, 3 in 212 and 215 s. ``-n 0`` runs it in this one process
    (``--pdb`` does so by itself)."""
    from pdl.machine.cpu import cpu_info

    try:
        return min(cpu_info().usable + 1, MAX_WORKERS)
    except pdl.PdlError:  # a bad PDL_MAX_CPUS: the test of it says so
        return 2


# Modules whose tests one worker runs, one after another in their order: a group each (the largest unit of work
# goes out first). pytest-xdist 3.8 groups the tests of an xdist_group mark by renaming their node ids, which pytest
# 9 no longer lets a plugin do: its marks alone group nothing, so the groups are named here.
ONE_WORKER = {
    "tests/loaders/test_ray_loader.py": "ray",  # its module's Ray instance, which its last tests stop
}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):  # type: ignore[no-untyped-def]
    """``--dist loadgroup`` (pyproject's addopts) as pytest-xdist means it, with ONE_WORKER's groups: every other
    test is a unit of work of its own, handed to whichever worker is free."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class Groups(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return ONE_WORKER.get(nodeid.split("::", 1)[0]) or super()._split_scope(nodeid)

    return Groups(config, log)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # type: ignore[no-untyped-def]
    """A worker gets this terminal's COLUMNS and LINES, or none: a worker's own come set to 80×24 (by readline,
    whatever the terminal), and pdl's consoles read COLUMNS once, at import, for their width."""
    node.workerinput["terminal"] = {name: os.environ.get(name) for name in ("COLUMNS", "LINES")}


class Turns:
    """Under pytest-xdist, a test that must run alone runs while no other test of the session does: one that
    starts a neighbour or waits for a quiet machine (the others' load would be its neighbour), or is marked
    ``alone`` (what it makes, another test's check would count: Grain's shared-memory blocks carry no pid). The
    others run side by side. Two locks in the session's temporary folder, shared by the workers: a gate each test
    passes on its way in (held by a test that waits to run alone, so the others cannot keep it waiting), and the
    room, held shared by every test that runs, exclusively by one alone."""

    def __init__(self, folder: Path) -> None:
        self.gate: IO[str] = open(folder / "pdl-alone-gate.lock", "a")  # open while the worker lives
        self.room: IO[str] = open(folder / "pdl-alone-room.lock", "a")

    @contextmanager
    def turn(self, alone: bool) -> Iterator[None]:
        fcntl.flock(self.gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(self.room, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if not alone:
                fcntl.flock(self.gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(self.room, fcntl.LOCK_UN)
            if alone:
                fcntl.flock(self.gate, fcntl.LOCK_UN)


_TURNS = pytest.StashKey[Turns]()


def runs_alone(item: pytest.Item) -> bool:
    marked = item.get_closest_marker("alone") or item.get_closest_marker("waits")
    return marked is not None or "neighbour" in getattr(item, "fixturenames", ())


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    for name, value in workerinput.get("terminal", {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    # the workers' temporary folders are <the session's>/gw0, gw1, …: the locks sit in the session's
    config.stash[_TURNS] = Turns(Path(config.option.basetemp).parent)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[object]:
    """Outside pytest-timeout's timer: the wait for a turn is no part of a test's time."""
    turns = item.config.stash.get(_TURNS, None)
    if turns is None:
        return (yield)
    with turns.turn(runs_alone(item)):
        return (yield)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes × 7 photo-like JPEGs of ImageNet-like sizes (21 images: batches of 5 leave a remainder)."""
    root = tmp_path_factory.mktemp("images")
    generate(root, classes=3, per_class=7, seed=0)
    return root


@pytest.fixture(autouse=True)
def no_waiting_for_quiet(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite's commands do not wait for a quiet machine (their own default is --wait-quiet 30): a test checks
    what a command does, not how long the machine it runs on stays busy. Tests of waiting mark ``waits``."""
    if request.node.get_closest_marker("waits") is None:
        from pdl.bench import compare, runner, tune

        made = runner.watch_for

        def not_waiting(exp, status=None):  # type: ignore[no-untyped-def]
            watch = made(exp, status)
            watch.wait_left = 0.0
            return watch

        monkeypatch.setattr(runner, "watch_for", not_waiting)
        monkeypatch.setattr(tune, "watch_for", not_waiting)
        monkeypatch.setattr(compare, "watch_for", not_waiting)


@pytest.fixture
def neighbour() -> Iterator[Callable[[float], int]]:
    """Starts CPU-bound processes outside pdl's tree (daemonized, as if started from another terminal) that spin
    for the given seconds; each is stopped at the end of the test whatever happened."""
    started: list[int] = []

    def start(seconds: float) -> int:
        code = (
            "import os, time\n"
            "pid = os.fork()\n"
            "if pid:\n    print(pid, flush=True); os._exit(0)\n"
            "fd = os.open(os.devnull, os.O_RDWR); os.dup2(fd, 1); os.dup2(fd, 2)\n"  # let the launcher's pipe close
            f"os.setsid(); end = time.monotonic() + {seconds}\n"
            "while time.monotonic() < end: pass\n"
        )
        launcher = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=10, check=True)
        started.append(int(launcher.stdout.strip()))
        return started[-1]

    try:
        yield start
    finally:
        for pid in started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(autouse=True)
def nothing_left_behind():
    """Every test must leave no worker process and no shared-memory ring of pdl behind. What one leaves is named
    (pid and command line), stopped and removed here, so only that test fails: one leak, one failure."""
    before = shm_entries()
    yield
    check_nothing_left(before)


_EXIT_GRACE_S = 60


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """However the session ends (-x, Ctrl-C, a crash in a fixture), stop what is left; then, should the interpreter
    hang on its way out (joining a pool's thread that waits on a process gone), leave after a grace period with
    the session's own exit status, naming the threads it waited on: a CI job never sits until its time limit."""
    if not session.config.pluginmanager.has_plugin("dsession"):  # pytest-xdist's controller runs no test: its
        stop_leftovers()  # children are the workers, and each stops what its tests left at its own session's end
    if session.config.rootpath != Path(__file__).resolve().parent.parent:
        return  # a session pytester runs inside this one: the outer session's exit is what counts

    def leave() -> None:
        time.sleep(_EXIT_GRACE_S)
        names = ", ".join(t.name for t in threading.enumerate() if t is not threading.current_thread())
        sys.stderr.write(f"pytest did not exit {_EXIT_GRACE_S} s after the session (threads alive: {names}); exiting\n")
        sys.stderr.write("where each thread waits (the culprit's stack names what started it):\n")
        sys.stderr.flush()
        faulthandler.dump_traceback(sys.stderr, all_threads=True)
        os._exit(int(exitstatus))

    threading.Thread(target=leave, name="pdl-exit-watchdog", daemon=True).start()


def write_image(path: Path, array: np.ndarray) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, array)
    assert ok
    buf.tofile(str(path))
    return path
