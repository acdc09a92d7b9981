"""After CI's test suite: nothing of it may be left running, in /dev/shm, or in its temporary folder.

    python .ci/leftovers.py snapshot FILE          the /dev/shm entries before the suite
    python .ci/leftovers.py check FILE TOKEN TMP   after it: processes whose environment carries PDL_CI_TOKEN=TOKEN
                                                   (everything the suite started inherits it), /dev/shm entries
                                                   not in FILE, and anything in TMP. Each is named, stopped or
                                                   removed, and the check exits 1 if there was any.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import psutil

SHM = Path("/dev/shm")


def shm() -> set[str]:
    return set(os.listdir(SHM)) if SHM.is_dir() else set()


def ours(token: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        try:
            if proc.environ().get("PDL_CI_TOKEN") == token and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def check(snapshot: Path, token: str, tmp: Path, grace_s: float = 10.0) -> int:
    problems = []
    deadline = time.monotonic() + grace_s  # an orphaned helper (multiprocessing's forkserver) exits on its own
    while ours(token) and time.monotonic() < deadline:
        time.sleep(0.2)
    procs = ours(token)
    for proc in procs:
        try:
            problems.append(f"process left running: pid {proc.pid}: {' '.join(proc.cmdline())[:200]}")
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=10)
    before = set(snapshot.read_text().split("\n")) if snapshot.exists() else set()
    for name in sorted(shm() - before):
        problems.append(f"left in /dev/shm: {name}")
        (SHM / name).unlink(missing_ok=True)
    for path in sorted(tmp.iterdir()) if tmp.is_dir() else []:
        problems.append(f"left in the suite's TMPDIR: {path}")
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() and not path.is_symlink() else path.unlink(missing_ok=True)
    for line in problems:
        print(f"leftovers: {line}", file=sys.stderr)
    print(f"leftovers: {'none' if not problems else f'{len(problems)} found (stopped and removed)'}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["snapshot"] and len(argv) == 2:
        Path(argv[1]).write_text("\n".join(sorted(shm())))
        return 0
    if argv[:1] == ["check"] and len(argv) == 4:
        return check(Path(argv[1]), argv[2], Path(argv[3]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
