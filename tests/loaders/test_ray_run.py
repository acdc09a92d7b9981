"""`pdl run --loaders sequential,ray` in a process of its own: quiet, and nothing of Ray left after it exits.

Apart from test_ray_loader.py, whose tests one xdist worker runs in turn around the module's Ray instance: this run
starts its own, in a temp dir of its own (where Ray also looks for a running instance: it finds none), so it may run
beside them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

ray = pytest.importorskip("ray")

import pdl  # noqa: E402
from pdl.data.synth import generate  # noqa: E402
from pdl.loaders.ray import RAY_TEMP_MAX  # noqa: E402

from ..processes import describe  # noqa: E402

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    generate(root, classes=2, per_class=8, seed=0)  # 16 images, as test_ray_loader.py's
    return root


def carrying(token: str) -> list[psutil.Process]:
    """The live processes whose environment holds PDL_TEST_RUN=``token``: what one run started, wherever it is now
    (a Ray daemon is nobody's child), and nothing another session on this machine started."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("PDL_TEST_RUN") == token and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def names(procs: list[psutil.Process]) -> set[str]:
    found = set()
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            found.add(proc.name())
    return found


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True])
def test_pdl_run_with_ray_is_quiet_and_leaves_nothing(folder: Path, tmp_path: Path, verbose: bool) -> None:
    """A real `pdl run --quiet` in its own process: its tables on stdout, nothing of Ray on stderr (Ray's lines
    only with --verbose), no Ray process, session folder or /dev/shm entry left after it exits. Its processes are
    known by a token in their environment, and its session folder goes in a temp dir of its own: another session's
    Ray on this machine is never taken for its leftovers."""
    shm_before = set(os.listdir("/dev/shm"))
    temp = Path(tempfile.mkdtemp(prefix="pr", dir="/tmp"))  # its $TMPDIR: short enough to hold Ray's sockets ...
    assert len(os.path.join(temp, "pdl-ray-" + "x" * 8)) <= RAY_TEMP_MAX  # ... so its session folder goes there
    token = f"{os.getpid()}-{time.monotonic_ns()}"
    args = ["run", "--inputs", str(folder), "--loaders", "sequential,ray", "--limit", "32", "--repeats", "1", "--quiet"]
    args += ["--wait-quiet", "0"]  # the suite's other processes (a Ray cluster of another test) are not to be waited out
    env = {k: v for k, v in os.environ.items() if k != "RAY_TMPDIR"}  # Ray's own temp dir: under TMPDIR, so its own
    env |= {"PYTHONPATH": str(Path(pdl.__file__).parents[1]), "COLUMNS": "160", "TMPDIR": str(temp), "PDL_TEST_RUN": token}
    out_path, err_path = tmp_path / "out.txt", tmp_path / "err.txt"
    with out_path.open("w") as out, err_path.open("w") as err:  # files, not pipes: nothing to drain while it runs
        proc = subprocess.Popen(
            [sys.executable, "-m", "pdl", *args, "--pipeline", "light", "--workers", "2", "--results", str(tmp_path), *["--verbose"] * verbose],
            stdout=out, stderr=err, text=True, env=env, start_new_session=True,
        )  # fmt: skip
    try:
        seen: set[str] = set()  # what carried the token while it ran: the check after has teeth
        deadline = time.monotonic() + 150
        while proc.poll() is None and time.monotonic() < deadline:
            seen |= names(carrying(token))
            time.sleep(0.25)
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        stdout, stderr = out_path.read_text(), err_path.read_text()
        assert proc.returncode == 0, stderr
        assert "│ ray" in stdout and "ray cluster (local): 1 node(s), 2 CPUs; tasks ran on 1" in stdout
        if verbose:
            assert "Started a local Ray instance" in stderr
        else:
            assert stderr == ""  # not "Token authentication is enabled…", no INFO lines, no warnings
        assert {"raylet", "gcs_server"} <= seen, seen
        assert [describe(p) for p in carrying(token)] == []  # no Ray process, nor any other the run started
        assert list(temp.iterdir()) == []  # its session folder (pdl-ray-…) removed
        assert {name for name in set(os.listdir("/dev/shm")) - shm_before if "ray" in name or "plasma" in name} == set()
    finally:
        shutil.rmtree(temp, ignore_errors=True)
