"""Usable cores: affinity, cgroup v1/v2 quotas (read from fake cgroup trees), the PDL_MAX_CPUS override."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pdl.errors import ConfigError
from pdl.machine.cpu import cgroup_quota, max_cpus_override, usable_cores
from pdl.machine.memory import memory_room_bytes


def fake_v2(tmp_path: Path, cpu_max: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in cpu_max.items():
        (root / rel).mkdir(parents=True, exist_ok=True)
        (root / rel / "cpu.max").write_text(text + "\n")
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text("0::/user.slice/job\n")
    return proc, root


def test_v2_quota_of_one_and_a_half_cpus_allows_two(tmp_path: Path) -> None:
    proc, root = fake_v2(tmp_path, {"user.slice/job": "150000 100000"})
    assert cgroup_quota(proc, root) == 1.5
    assert usable_cores(affinity=8, quota=1.5, override=None) == 2


def test_v2_max_means_no_quota_and_a_parent_limit_binds(tmp_path: Path) -> None:
    proc, root = fake_v2(tmp_path, {"user.slice/job": "max 100000"})
    assert cgroup_quota(proc, root) is None
    proc, root = fake_v2(tmp_path, {"user.slice/job": "max 100000", "user.slice": "300000 100000"})
    assert cgroup_quota(proc, root) == 3.0


def test_v1_cfs_quota(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    cpu = root / "cpu,cpuacct" / "docker" / "abc"
    cpu.mkdir(parents=True)
    (cpu / "cpu.cfs_quota_us").write_text("250000\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "cg"
    proc.write_text("12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n")
    assert cgroup_quota(proc, root) == 2.5
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")  # unlimited
    assert cgroup_quota(proc, root) is None


def test_missing_cgroup_files_mean_no_quota(tmp_path: Path) -> None:
    assert cgroup_quota(tmp_path / "absent", tmp_path) is None


def test_memory_room_is_what_the_cgroup_limit_leaves_where_that_is_less(tmp_path: Path) -> None:
    import psutil

    available = psutil.virtual_memory().available
    root = tmp_path / "cgroup"
    job = root / "user.slice" / "job"
    job.mkdir(parents=True)
    (job / "memory.max").write_text("max\n")
    (job / "memory.current").write_text("1000\n")
    (root / "user.slice" / "memory.max").write_text(f"{2**20 + 1000}\n")  # a parent's limit binds too
    (root / "user.slice" / "memory.current").write_text("1000\n")
    proc = tmp_path / "cg"
    proc.write_text("0::/user.slice/job\n")
    assert memory_room_bytes(proc, root) == 2**20
    (root / "user.slice" / "memory.max").write_text("max\n")
    assert abs(memory_room_bytes(proc, root) - available) < 2**28  # no limit: what the machine has (it moves)
    v1 = root / "memory" / "docker" / "abc"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(f"{3 * 2**20}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{2**20}\n")
    proc.write_text("12:memory:/docker/abc\n")
    assert memory_room_bytes(proc, root) == 2 * 2**20
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    assert abs(memory_room_bytes(proc, root) - available) < 2**28


def test_usable_is_the_smallest_limit() -> None:
    assert usable_cores(16, None, None) == 16
    assert usable_cores(16, 4.0, None) == 4
    assert usable_cores(16, 4.0, 3) == 3
    assert usable_cores(2, 4.0, 8) == 2
    assert usable_cores(4, 0.2, None) == 1


def test_override_must_be_a_positive_number() -> None:
    assert max_cpus_override({"PDL_MAX_CPUS": "3"}) == 3
    assert max_cpus_override({}) is None
    with pytest.raises(ConfigError, match="PDL_MAX_CPUS='zero' is not a positive whole number"):
        max_cpus_override({"PDL_MAX_CPUS": "zero"})


@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset not installed")
def test_taskset_to_one_core_gives_one_usable_core() -> None:
    code = "from pdl.machine.cpu import cpu_info; print(cpu_info().usable)"
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
