"""The memory limit a process runs under, read from cgroup files (v2 and v1), with the out-of-memory killer's
count: what a worker's death by SIGKILL is explained with."""

from __future__ import annotations

from pathlib import Path

from pdl.machine.memory import MemoryLimit, memory_limit


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_the_tightest_memory_max_on_the_way_up_with_its_peak_and_the_kills(tmp_path: Path) -> None:
    root, proc, vmstat = tmp_path / "cg", tmp_path / "cgroup", tmp_path / "vmstat"
    write(proc, "0::/job/step\n")
    write(root / "job" / "step" / "memory.max", "max\n")
    write(root / "job" / "step" / "memory.events", "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n")
    write(root / "job" / "memory.max", f"{400 * 2**20}\n")
    write(root / "job" / "memory.peak", f"{399 * 2**20}\n")
    write(root / "job" / "memory.events", "oom 2\noom_kill 2\n")
    write(vmstat, "pgfault 12\noom_kill 5\n")
    got = memory_limit(proc, root, vmstat)
    assert got == MemoryLimit("memory.max", 400 * 2**20, 399 * 2**20, 1 + 2 + 5)
    assert got.said() == "the cgroup's memory.max is 400 MiB (peak 399 MiB)"


def test_v1_limit_in_bytes_and_oom_control_and_no_limit_written_as_a_huge_number(tmp_path: Path) -> None:
    root, proc, vmstat = tmp_path / "cg", tmp_path / "cgroup", tmp_path / "vmstat"
    write(proc, "5:cpu,cpuacct:/a\n4:memory:/a\n")
    write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")
    write(root / "memory" / "a" / "memory.limit_in_bytes", f"{200 * 2**20}\n")
    write(root / "memory" / "a" / "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    got = memory_limit(proc, root, vmstat)  # no vmstat: the cgroup's count only; no peak file: no peak
    assert got == MemoryLimit("memory.limit_in_bytes", 200 * 2**20, None, 3)
    assert got.said() == "the cgroup's memory.limit_in_bytes is 200 MiB"


def test_no_cgroup_limit_is_the_machines_memory_only(tmp_path: Path) -> None:
    write(tmp_path / "cgroup", "0::/\n")
    write(tmp_path / "vmstat", "oom_kill 1\n")
    got = memory_limit(tmp_path / "cgroup", tmp_path / "cg", tmp_path / "vmstat")
    assert got == MemoryLimit(None, None, None, 1) and got.said() == ""
