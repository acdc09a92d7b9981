"""What else competed for the CPUs pdl may use, per timed round: other processes, the hypervisor, the cgroup quota.

A round is evidence about the code only when the machine did nothing else. A neighbour's CPU-bound process on a
2-core machine halves a 2-worker loader's speed while a one-thread calibration barely notices (Linux shares the
cores between sessions, autogroup), so pdl does not infer the machine's state from its own timings: it reads it.

Per round, two cheap readings (``Watch.reading``) bracket the round; their difference (``Watch.between``) is an
``Interference``:

- ``others``: CPU time of processes outside pdl's own tree on the CPUs pdl may run on (its affinity set), in
  cores: the per-CPU busy time of ``/proc/stat`` less what pdl, its workers and the processes it started used
  (their ``/proc/PID/stat`` times; a child reaped during the round is in its parent's ``cutime``);
- ``steal``: time the hypervisor gave the CPUs to other guests (``/proc/stat``), in cores;
- ``throttled``: periods (and seconds) the cgroup's CPU quota throttled pdl (v2 ``cpu.stat``
  ``nr_throttled``/``throttled_usec``; v1 ``nr_throttled``/``throttled_time``);
- ``pressure``: the share of the round some task waited for a CPU (``/proc/pressure/cpu`` "some"; pdl's own
  workers count too, so it is recorded, never judged alone).

Each is None ("unknown") where its source is missing or unreadable (not Linux, a locked-down container). A round
is disturbed when ``others`` or ``steal`` passes its limit (``OTHERS_LIMIT``, ``STEAL_LIMIT``): those rounds are
re-measured, and never feed a verdict. A quota's throttling is the machine one measures (a training job under the
same limit is throttled alike), so it is said, not left out.

No I/O beyond /proc and /sys, and it never prints: waiting reports through a callback.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import PdlError
from .cpu import CGROUP_ROOT, cgroups, cpu_info

OTHERS_LIMIT = 0.10
"""A round is disturbed when other processes used more than this share of the usable cores (beyond the CPUs pdl
may run on but does not plan to use). 0.10 of 2 cores is 0.2 cores: on this quiet 2-core VM, rounds read at most
0.06 (/proc/stat counts in ticks; docs/measuring.md has the figures)."""
STEAL_LIMIT = 0.05
"""A round is disturbed when the hypervisor took more than this share of the usable cores."""
QUIET_WINDOW_S = 0.5
"""How long one look at the machine lasts while waiting for quiet."""
TOP = 3
"""How many of the busiest other processes a disturbed round names."""
EXIT_BUSY = 4
"""The CLI's exit code when --if-busy fail met a busy machine: not 1 (a regression), not 2 (bad input)."""


class MachineBusy(PdlError):
    """--if-busy fail: the machine stayed busy past --wait-quiet, so nothing was measured on it."""

    exit_code = EXIT_BUSY


@dataclass(frozen=True)
class Interference:
    """What competed for the CPUs pdl may use during one timed round (None: unknown here)."""

    others: float | None
    """Cores used by processes outside pdl's own process tree on the CPUs pdl may run on, mean over the round."""
    steal: float | None
    """Cores the hypervisor gave to other guests (VM steal time), mean over the round."""
    throttled: int | None
    """CPU-quota periods in which the cgroup was throttled during the round; None without a quota."""
    throttled_s: float | None
    """Seconds the cgroup was throttled during the round; None without a quota."""
    pressure: float | None
    """Share of the round's wall time in which some task waited for a CPU (PSI "some"; pdl's own count too)."""
    usable: int
    """The usable cores the round was measured with."""
    cpus: int
    """CPUs pdl may run on (its affinity set): others' time is counted over these."""
    top: tuple[str, ...] = ()
    """When disturbed: the busiest other processes just after the round, as 'pid name cores' ('1234 python3 0.98')."""
    stalled: tuple[str, ...] = ()
    """pdl's own workers that stopped making progress in the round ('worker 1 (pid 1234) is stopped (T): …'): the
    round says nothing about the loader either."""

    @property
    def spare(self) -> float:
        """Cores pdl may run on but does not plan to use (a quota or PDL_MAX_CPUS below the affinity set)."""
        return float(max(0, self.cpus - self.usable))

    @property
    def crowded(self) -> bool:
        """Other processes took more than ``OTHERS_LIMIT`` of the usable cores (beyond the spare ones)."""
        return self.others is not None and self.others - self.spare > OTHERS_LIMIT * self.usable

    @property
    def stolen(self) -> bool:
        """The hypervisor took more than ``STEAL_LIMIT`` of the usable cores."""
        return self.steal is not None and self.steal > STEAL_LIMIT * self.usable

    @property
    def disturbed(self) -> bool:
        """Other processes or the hypervisor took more than their limit of the usable cores, or a worker stalled."""
        return self.crowded or self.stolen or bool(self.stalled)

    def describe(self) -> str:
        """'other processes used 0.98 of 2 cores (1234 python3 0.98)'; what disturbed the round, in words."""
        parts = []
        if self.crowded:
            parts.append(f"other processes used {self.others:.2f} of {self.usable} cores")
        if self.stolen:
            parts.append(f"the hypervisor stole {self.steal:.2f} of {self.usable} cores")
        text = "; ".join(parts)
        text = (text + (f" ({', '.join(self.top)})" if self.top else "")) if text else ""
        return "; ".join(filter(None, [text, *self.stalled])) or "quiet"


@dataclass(frozen=True)
class Reading:
    """One look at the counters (a round is the difference of two)."""

    t: float  # time.monotonic()
    busy: float | None  # CPU seconds busy (user, nice, system, irq, softirq) summed over the affinity set
    steal: float | None  # CPU seconds stolen, summed over the affinity set
    own: float | None  # CPU seconds of pdl's own processes (user + system + reaped children's)
    own_pids: frozenset[int]
    throttled: int | None
    throttled_s: float | None
    pressure_s: float | None  # PSI "some" total, seconds


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _read_bytes(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 1 << 16)
    except OSError:
        return None
    finally:
        os.close(fd)


def proc_times(pid: int, proc: str = "/proc") -> tuple[int, float, bytes] | None:
    """(parent pid, CPU seconds of the process and its reaped children, name) from ``/proc/PID/stat``."""
    data = _read_bytes(f"{proc}/{pid}/stat")
    if not data:
        return None
    try:
        close = data.rindex(b")")
        fields = data[close + 2 :].split()
        ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
        return int(fields[1]), ticks / _TICK, data[data.index(b"(") + 1 : close]
    except (ValueError, IndexError):
        return None


def cpu_times(cpus: Iterable[int], stat: bytes | None) -> tuple[float, float] | None:
    """(busy, steal) CPU seconds summed over ``cpus`` from the text of ``/proc/stat``; None if it cannot be read."""
    if stat is None:
        return None
    wanted = {f"cpu{c}".encode() for c in cpus}
    busy = steal = 0.0
    seen = 0
    for line in stat.splitlines():
        parts = line.split()
        if not parts or parts[0] not in wanted:
            continue
        try:
            v = [int(x) for x in parts[1:9]] + [0] * max(0, 9 - len(parts))
        except ValueError:
            return None
        busy += v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system irq softirq (guest is inside user)
        steal += v[7]
        seen += 1
    return (busy / _TICK, steal / _TICK) if seen == len(wanted) else None


def pressure_some(text: bytes | None) -> float | None:
    """Seconds of CPU pressure ("some ... total=µs") from a PSI file's text."""
    for line in (text or b"").splitlines():
        if line.startswith(b"some"):
            for field in line.split():
                if field.startswith(b"total="):
                    try:
                        return int(field[6:]) / 1e6
                    except ValueError:
                        return None
    return None


def throttle_files(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = CGROUP_ROOT) -> tuple[tuple[Path, str], ...]:
    """The ``cpu.stat`` files of the process's cgroup and its ancestors that have a CPU quota, each with its
    version ("v1" or "v2"): where throttling of pdl is counted."""
    return tuple(
        (g.directory / "cpu.stat", g.version) for g in cgroups("cpu", proc_cgroup, root) if _has_quota(g.directory, g.version)
    )


def _has_quota(directory: Path, version: str) -> bool:
    try:
        if version == "v2":
            return not (directory / "cpu.max").read_text().startswith("max")
        return int((directory / "cpu.cfs_quota_us").read_text()) > 0
    except (OSError, ValueError):
        return False


def throttling(files: Iterable[tuple[Path, str]]) -> tuple[int, float] | None:
    """(periods throttled, seconds throttled) summed over the ``cpu.stat`` files; None when none can be read."""
    periods, seconds, read = 0, 0.0, False
    for path, version in files:
        data = _read_bytes(str(path))
        if data is None:
            continue
        values = dict(line.split(None, 1) for line in data.decode(errors="replace").splitlines() if " " in line)
        try:
            periods += int(values.get("nr_throttled", 0))
            if version == "v2":
                seconds += int(values.get("throttled_usec", 0)) / 1e6
            else:
                seconds += int(values.get("throttled_time", 0)) / 1e9
        except ValueError:
            continue
        read = True
    return (periods, seconds) if read else None


def processes(proc: str = "/proc") -> dict[int, tuple[int, float, bytes]]:
    """Every process's (parent pid, CPU seconds with reaped children, name): a whole-machine look (~1.5 ms for 70
    processes), taken only when a round was disturbed or while waiting for quiet."""
    found = {}
    try:
        names = os.listdir(proc)
    except OSError:
        return {}
    for name in names:
        if name.isdigit():
            times = proc_times(int(name), proc)
            if times is not None:
                found[int(name)] = times
    return found


def tree(root: int, table: dict[int, tuple[int, float, bytes]], extra: Iterable[int] = ()) -> set[int]:
    """``root``, ``extra`` and all their descendants in ``table`` (pid → (parent, ...))."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    todo = [root, *extra]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


class Watch:
    """Reads what competes with pdl, round by round, for one command; waits for quiet within one budget.

    ``wait_s`` is the whole command's budget for waiting (a sweep does not wait again for every point once the
    machine proved busy); ``fail`` raises ``MachineBusy`` rather than measure on a busy machine.
    """

    def __init__(
        self,
        wait_s: float = 0.0,
        fail: bool = False,
        *,
        say: Callable[[str], None] = lambda _m: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        info = cpu_info()
        self.usable = info.usable
        try:
            self.cpus: tuple[int, ...] = tuple(sorted(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            self.cpus = tuple(range(info.logical))
        self.linux = sys.platform.startswith("linux")
        self.wait_left = max(0.0, wait_s)
        self.fail = fail
        self.waited_s = 0.0
        self.sleep = sleep
        self.say = say  # a status line while waiting (the CLI's progress bar)
        self._throttle_files = throttle_files() if self.linux else ()
        self._own: frozenset[int] = frozenset({os.getpid()})
        self._extra: frozenset[int] = frozenset()

    def follow(self, pids: Iterable[int]) -> None:
        """Count ``pids`` (and their descendants) as pdl's own from now on (a loader's workers, Ray's actors);
        the process tree is read once here, not in every round."""
        self._extra = frozenset(pids)
        table = processes() if self.linux else {}
        self._own = frozenset(tree(os.getpid(), table, self._extra)) if table else frozenset({os.getpid(), *self._extra})

    def reading(self) -> Reading:
        """The counters now: /proc/stat, pdl's own processes, cgroup throttling, PSI (~0.1 ms here)."""
        if not self.linux:
            return Reading(time.monotonic(), None, None, None, frozenset(), None, None, None)
        t = time.monotonic()
        cpu = cpu_times(self.cpus, _read_bytes("/proc/stat"))
        own = 0.0
        alive = set()
        for pid in self._own:
            times = proc_times(pid)
            if times is not None:
                own += times[1]
                alive.add(pid)
        throttle = throttling(self._throttle_files) if self._throttle_files else None
        return Reading(
            t,
            cpu[0] if cpu else None,
            cpu[1] if cpu else None,
            own if alive else None,
            frozenset(alive),
            throttle[0] if throttle else None,
            throttle[1] if throttle else None,
            pressure_some(_read_bytes("/proc/pressure/cpu")),
        )

    def between(self, a: Reading, b: Reading) -> Interference:
        """What competed between two readings; a disturbed one names the busiest other processes."""
        wall = b.t - a.t
        others = steal = pressure = None
        if wall > 0:
            if a.busy is not None and b.busy is not None and a.own is not None and b.own is not None:
                # a process of pdl's that ended in between: its time moved into its parent's (reaped children)
                others = max(0.0, (b.busy - a.busy) - (b.own - a.own)) / wall
            if a.steal is not None and b.steal is not None:
                steal = max(0.0, b.steal - a.steal) / wall
            if a.pressure_s is not None and b.pressure_s is not None:
                pressure = min(1.0, max(0.0, b.pressure_s - a.pressure_s) / wall)
        throttled = b.throttled - a.throttled if a.throttled is not None and b.throttled is not None else None
        throttled_s = b.throttled_s - a.throttled_s if a.throttled_s is not None and b.throttled_s is not None else None
        found = Interference(others, steal, throttled, throttled_s, pressure, self.usable, len(self.cpus))
        if found.disturbed and others is not None and a.own is not None and b.own is not None:
            # a process pdl started during the round (and still running) is pdl's, not another's: look again
            table = processes()
            new = tree(os.getpid(), table, self._extra) - self._own
            if new:
                self._own |= new
                mine = sum(table[pid][1] for pid in new)  # started in the round: all its time is the round's
                others = max(0.0, (b.busy or 0.0) - (a.busy or 0.0) - (b.own - a.own) - mine) / wall
                found = Interference(others, steal, throttled, throttled_s, pressure, self.usable, len(self.cpus))
        if found.disturbed:
            found = dataclasses.replace(found, top=self.top())
        return found

    def top(self, window_s: float = 0.2) -> tuple[str, ...]:
        """The busiest processes outside pdl's tree over a short look now: 'pid name cores', busiest first."""
        if not self.linux:
            return ()
        before = processes()
        t0 = time.monotonic()
        self.sleep(window_s)
        after = processes()
        wall = max(1e-3, time.monotonic() - t0)
        own = tree(os.getpid(), after, self._extra)
        used = []
        for pid, (_, cpu, name) in after.items():
            if pid in own or pid not in before:
                continue
            cores = (cpu - before[pid][1]) / wall
            if cores >= 0.05:
                used.append((cores, pid, name.decode(errors="replace")))
        used.sort(reverse=True)
        return tuple(f"{pid} {name} {cores:.2f}" for cores, pid, name in used[:TOP])

    def look(self, window_s: float = QUIET_WINDOW_S) -> Interference:
        """One look at the machine over ``window_s`` (pdl idle meanwhile): what else is running now."""
        a = self.reading()
        self.sleep(window_s)
        return self.between(a, self.reading())

    def wait_quiet(self, seen: Interference) -> bool:
        """After ``seen``: while the machine is disturbed, look again every ``QUIET_WINDOW_S`` until one look is quiet
        or the budget is spent. True when quiet (at once if ``seen`` was); False when the machine stayed busy
        (``MachineBusy`` instead with ``fail``)."""
        last = seen
        while last.disturbed:
            if self.wait_left <= 0:
                self.refuse(last)
                return False
            self.say(f"waiting for quiet ({self.wait_left:.0f} s left): {last.describe()}")
            t0 = time.monotonic()
            last = self.look()
            spent = time.monotonic() - t0
            self.wait_left -= spent
            self.waited_s += spent
        return True

    def refuse(self, seen: Interference) -> None:
        """With ``fail``: raise ``MachineBusy`` naming what ``seen`` found; else nothing."""
        if self.fail:
            raise MachineBusy(
                f"the machine is busy: {seen.describe()}; nothing measured on it (--if-busy fail): stop what runs "
                "there, or raise --wait-quiet"
            )


def busy_summary(busy: Sequence[Interference], rounds: int) -> str:
    """'other processes used up to 0.98 of 2 cores in 7 of 7 rounds (1234 python3)': what disturbed ``busy`` of
    ``rounds`` rounds, with the processes named most often."""
    if not busy:
        return f"nothing else seen in {rounds} rounds"
    parts = []
    others = [i.others for i in busy if i.crowded and i.others is not None]
    if others:
        parts.append(f"other processes used up to {max(others):.2f} of {busy[0].usable} cores")
    steal = [i.steal for i in busy if i.stolen and i.steal is not None]
    if steal:
        parts.append(f"the hypervisor stole up to {max(steal):.2f} of {busy[0].usable} cores")
    names = Counter(" ".join(t.split()[:2]) for i in busy for t in i.top)
    who = f" ({', '.join(name for name, _ in names.most_common(TOP))})" if names else ""
    crowded = [i for i in busy if i.crowded or i.stolen]
    said = f"{' and '.join(parts)} in {len(crowded)} of {rounds} rounds{who}" if parts else ""
    stalled = [i for i in busy if i.stalled]
    if stalled:  # counted apart: a stall is one round's, the neighbours' load may be every round's
        n = len(stalled)
        stall = f"a worker of pdl's stalled in {n} of {rounds} round{'' if rounds == 1 else 's'} ({stalled[0].stalled[0]})"
        said = f"{said}; {stall}" if said else stall
    return said


def busy_word(busy: Sequence[Interference]) -> str:
    """'the machine was busy' when another process or the hypervisor disturbed a round; 'a worker of pdl's
    stalled' when only pdl's own stalled workers did."""
    if all(i.stalled and not (i.crowded or i.stolen) for i in busy):
        return "a worker of pdl's stalled"
    return "the machine was busy"


def throttle_summary(rounds: Sequence[Interference]) -> str | None:
    """'the cgroup's CPU quota throttled pdl in 5 of 5 rounds (0.12 s a round)', or None when it never did (or
    no quota is set)."""
    hit = [i for i in rounds if i.throttled]
    if not hit:
        return None
    seconds = sorted(i.throttled_s or 0.0 for i in hit)[len(hit) // 2]
    return f"the cgroup's CPU quota throttled pdl in {len(hit)} of {len(rounds)} rounds ({seconds:.2f} s a round, median)"
