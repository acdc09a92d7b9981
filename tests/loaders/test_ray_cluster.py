"""The Ray loader across machines, on one machine: Ray's own ``cluster_utils.Cluster`` starts a head and a second
node as separate raylets (one CPU each); the loader connects by address, its workers land on both nodes, and
its batches are the sequential loader's. On real machines: see docs/ray-shards.md, "Ray across machines".
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import pytest

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

from pdl import ImageFolder, SequentialLoader, load_pipeline  # noqa: E402
from pdl.data.synth import generate  # noqa: E402
from pdl.loaders import LoaderSpec, make_loader  # noqa: E402
from pdl.loaders.ray import ray_temp_dir  # noqa: E402

from ..processes import live_children, stopping_what_it_starts  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@contextmanager
def two_nodes() -> Iterator[cluster_utils.Cluster]:
    """Two nodes of one CPU each. Everything Ray writes, its default temp dir included (RAY_TMPDIR: Ray writes the
    cluster's address there, whatever ``temp_dir`` says), lives in one new folder, removed after; every process it
    started is stopped after, also when the setup fails half-way (the head started, the second node not)."""
    if ray.is_initialized():
        ray.shutdown()
    temp = Path(ray_temp_dir("ray-"))  # short: Ray's socket paths under it must fit in 107 characters
    node = dict(num_cpus=1, include_dashboard=False, temp_dir=str(temp), object_store_memory=100 * 2**20)
    with pytest.MonkeyPatch.context() as env, stopping_what_it_starts():
        env.setenv("RAY_TMPDIR", str(temp))
        (temp / "ray").mkdir()  # Ray's default temp dir under RAY_TMPDIR: where it writes the address file
        made = cluster_utils.Cluster()  # no node yet: the head is the first add_node, inside the try
        try:
            made.add_node(**node)
            made.add_node(**node)
            made.wait_for_nodes()
            yield made
        finally:
            ray.shutdown()
            made.shutdown()
            shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def cluster() -> Iterator[cluster_utils.Cluster]:
    with two_nodes() as made:
        yield made


def test_a_setup_that_fails_after_the_head_started_leaves_nothing_running(monkeypatch: pytest.MonkeyPatch) -> None:
    add_node = cluster_utils.Cluster.add_node
    started: list[int] = []

    def head_then_fail(self: cluster_utils.Cluster, **kwargs: object) -> object:
        if self.head_node is not None:
            raise RuntimeError("the second node did not start")
        node = add_node(self, **kwargs)
        started.extend(p.pid for p in live_children())
        return node

    monkeypatch.setattr(cluster_utils.Cluster, "add_node", head_then_fail)
    with pytest.raises(RuntimeError, match="second node"):
        with two_nodes():
            pytest.fail("the setup should have failed")
    assert len(started) >= 2  # the head's GCS and raylet (at least) were running when the setup failed
    assert live_children() == []  # and are stopped now
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in started)


def test_batches_made_on_both_nodes_match_the_sequential_loaders(cluster, tmp_path: Path) -> None:
    root = tmp_path / "images"
    generate(root, classes=2, per_class=6, seed=2)  # 12 images: batches of 5, 5 and 2
    dataset, pipeline = ImageFolder(root), load_pipeline("medium")
    nodes = {node.node_id for node in cluster.list_all_nodes()}  # the head's raylet and the second one's
    assert len(nodes) == 2
    spec = LoaderSpec(batch_size=5, shuffle=True, seed=4, num_workers=2, ray_address=cluster.address)
    baseline = SequentialLoader(dataset, pipeline, spec)
    with make_loader("ray", dataset, pipeline, spec) as loader:
        loader.start()
        assert set(loader.actor_nodes) == nodes  # one worker on each node (each has one CPU)
        for _epoch in range(2):
            got, want = list(loader), list(baseline)
            assert len(got) == len(want) == len(loader) == 3
            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(g.indices, w.indices)
                np.testing.assert_array_equal(g.images, w.images)  # bit-identical, wherever made
        assert set(loader.node_tasks) == nodes  # chunks were made on both nodes
        info = loader.cluster_info()
        assert (info["address"], info["nodes"], info["cpus"], info["task_nodes"]) == (cluster.address, 2, 2.0, 2)
    assert not ray.is_initialized()  # the loader connected, so it disconnects; the cluster is the fixture's
