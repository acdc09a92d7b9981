"""Shards for data-parallel training: each rank's share of every epoch, as torch's DistributedSampler takes it.

For world sizes 1–4 and every loader: disjoint (but for the padding), complete, equal-length, and each rank's
batches bit-identical to the sequential loader's for that rank. Then the CLI: --rank/--world-size, defaulting
from RANK/WORLD_SIZE, and one-line errors.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from pdl import ImageFolder, SequentialLoader, load_pipeline
from pdl.cli import app
from pdl.errors import ConfigError
from pdl.loaders import LoaderSpec, make_loader
from pdl.loaders.batching import epoch_plan, shard

pytestmark = pytest.mark.timeout(180)
LOADERS = ["sequential", "process", "process-pickle", "thread", "torch"]  # ray: tests/loaders/test_ray_loader.py
N = 21  # conftest's images: 21 is no multiple of 2, 3 or 4


@pytest.fixture(scope="module")
def light():
    return load_pipeline("light")


def collect(loader) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(b.images.copy(), b.indices.copy()) for b in loader]


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("n", [1, 3, 8, 21])
def test_shards_are_distributed_samplers(n: int, shuffle: bool, drop_last: bool) -> None:
    """Given the same global order, every rank takes exactly the indices DistributedSampler gives it."""
    distributed = pytest.importorskip("torch.utils.data.distributed")
    for world in range(1, 5):
        order = np.random.default_rng(7).permutation(n) if shuffle else np.arange(n)
        for rank in range(world):
            sampler = distributed.DistributedSampler(
                list(order), num_replicas=world, rank=rank, shuffle=False, drop_last=drop_last
            )
            assert shard(order, rank, world, drop_last).tolist() == [int(order[i]) for i in sampler]


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_plans_are_disjoint_complete_and_equal(world: int, drop_last: bool) -> None:
    for epoch in range(2):
        plans = [
            epoch_plan(N, LoaderSpec(batch_size=2, shuffle=True, seed=5, drop_last=drop_last, rank=r, world_size=world), epoch)
            for r in range(world)
        ]
        shards = [np.concatenate(plan) if plan else np.empty(0, np.int64) for plan in plans]
        assert len({len(s) for s in shards}) == 1  # equal length
        seen = Counter(int(i) for s in shards for i in s)
        if drop_last:
            per_rank = (N // world) // 2 * 2  # the data's remainder, then each rank's partial batch, dropped
            assert all(len(s) == per_rank for s in shards) and max(seen.values()) == 1  # disjoint
            assert all(len(b) == 2 for plan in plans for b in plan)
        else:
            per_rank = -(-N // world)
            assert all(len(s) == per_rank for s in shards)
            assert set(seen) == set(range(N))  # complete
            assert sum(seen.values()) - N == per_rank * world - N  # repeated: only the padding
            assert max(seen.values()) <= 2


def test_every_rank_sees_the_same_global_order() -> None:
    """Rank r's i-th image is the global order's (i*world + r)-th: the ranks share one permutation per epoch."""
    world, spec = 3, LoaderSpec(batch_size=4, shuffle=True, seed=9)
    whole = np.concatenate(epoch_plan(N, spec, 1))
    for rank in range(world):
        mine = np.concatenate(epoch_plan(N, LoaderSpec(batch_size=4, shuffle=True, seed=9, rank=rank, world_size=world), 1))
        assert mine.tolist() == np.resize(whole, 21)[rank::world].tolist()


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("name", LOADERS)
def test_each_rank_of_every_loader_is_the_sequential_loaders_shard(images: Path, light, name: str, world: int) -> None:
    dataset = ImageFolder(images)
    shards = []
    for rank in range(world):
        spec = LoaderSpec(batch_size=4, shuffle=True, seed=3, num_workers=2, rank=rank, world_size=world)
        want = collect(SequentialLoader(dataset, light, spec))
        with make_loader(name, dataset, light, spec) as loader:
            got = collect(loader)
            assert len(got) == len(loader) == len(want)
        for (gi, gx), (wi, wx) in zip(got, want, strict=True):
            assert np.array_equal(gx, wx) and gi.dtype == wi.dtype and np.array_equal(gi, wi)  # bit-identical
        shards.append(np.concatenate([x for _, x in got]))
    assert len({len(s) for s in shards}) == 1
    assert set(np.concatenate(shards).tolist()) == set(range(N))
    assert sum(len(s) for s in shards) - N < world  # the padding: fewer than one image per rank


def test_len_follows_the_shard(images: Path, light) -> None:
    dataset = ImageFolder(images)
    for drop_last, expected in ((False, [2, 2, 2, 2]), (True, [1, 1, 1, 1])):  # 6 (or 5) images per rank, batches of 4
        for rank in range(4):
            loader = SequentialLoader(dataset, light, batch_size=4, rank=rank, world_size=4, drop_last=drop_last)
            assert len(loader) == expected[rank] == len(list(loader))


@pytest.mark.parametrize(
    ("rank", "world", "message"),
    [
        (2, 2, "`rank` must be below `world_size` (2): ranks are 0 to 1. Found: 2"),
        (-1, 2, "`rank` must be a whole number >= 0. Found: -1"),
        (0, 0, "`world_size` must be a whole number >= 1. Found: 0"),
    ],
)
def test_bad_shard_in_the_spec(rank: int, world: int, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        LoaderSpec(rank=rank, world_size=world)
    assert str(info.value) == message


# -- the CLI -------------------------------------------------------------------------------------------------
runner = CliRunner()
QUICK = ["--pipeline", "light", "--batch-size", "4", "--repeats", "1", "--quiet", "--loaders", "sequential,thread", "-w", "2"]


def run(images: Path, results: Path, *args: str, env: dict[str, str] | None = None):
    return runner.invoke(
        app, ["run", "--inputs", str(images), "--results", str(results), *QUICK, *args], env={"COLUMNS": "160", **(env or {})}
    )


def recorded(results: Path) -> tuple[dict, list[dict]]:
    [path] = sorted(results.glob("*.json"))
    data = json.loads(path.read_text())
    return data["options"], data["points"]


@pytest.mark.parametrize(
    ("args", "env", "shard_"),
    [
        ([], {"RANK": "", "WORLD_SIZE": ""}, (0, 1)),
        ([], {"RANK": "2", "WORLD_SIZE": "3"}, (2, 3)),
        (["--rank", "0", "--world-size", "2"], {"RANK": "2", "WORLD_SIZE": "3"}, (0, 2)),  # options beat the env
    ],
)
def test_cli_shard_from_options_or_environment(images: Path, tmp_path: Path, args, env, shard_) -> None:
    res = run(images, tmp_path, *args, env=env)
    assert res.exit_code == 0, res.output
    options, points = recorded(tmp_path)
    assert (options["rank"], options["world_size"]) == shard_
    assert {p["images"] for p in points} == {-(-N // shard_[1])}  # each loader measured this rank's share
    if shard_[1] > 1:
        assert f"rank {shard_[0]} of {shard_[1]}" in res.stdout


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--rank", "2", "--world-size", "2"], {}, "error: --rank must be below --world-size (2): ranks are 0 to 1. Found: 2"),
        ([], {"RANK": "4", "WORLD_SIZE": "4"}, "error: --rank must be below --world-size (4): ranks are 0 to 3. Found: 4"),
        (["--world-size", "0"], {}, "error: --world-size must be a whole number >= 1. Found: 0"),
        ([], {"RANK": "one"}, "error: environment variable RANK='one' is not a whole number: fix or unset it"),
        ([], {"WORLD_SIZE": "2.5"}, "error: environment variable WORLD_SIZE='2.5' is not a whole number: fix or unset it"),
    ],
)
def test_cli_bad_shard_is_one_line_exit_2(images: Path, tmp_path: Path, args, env, message) -> None:
    res = run(images, tmp_path, *args, env=env)
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines() == [message]
    assert list(tmp_path.glob("*.json")) == []
