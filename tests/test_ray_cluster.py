"""The Ray loader across machines, on one machine: Ray's own ``cluster_utils.Cluster`` starts a head and a second
node as separate raylets (one CPU each); the loader connects by address, its workers land on both nodes, and
its batches are the sequential loader's. On real machines: see README, "Ray across machines".
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

from pdl import ImageFolder, SequentialLoader, load_pipeline  # noqa: E402
from pdl.inputs import generate  # noqa: E402
from pdl.loaders import LoaderSpec, make_loader  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def cluster() -> Iterator[object]:
    """Two nodes of one CPU each, their session files in a folder of their own; all stopped and removed after."""
    if ray.is_initialized():
        ray.shutdown()
    temp = tempfile.mkdtemp(prefix="pdl-cluster-")  # short: Ray's socket paths must fit in 107 characters
    node = dict(num_cpus=1, include_dashboard=False, temp_dir=temp, object_store_memory=100 * 2**20)
    made = cluster_utils.Cluster(initialize_head=True, head_node_args=node)
    try:
        made.add_node(**node)
        made.wait_for_nodes()
        yield made
    finally:
        started = [proc for proc in psutil.Process().children(recursive=True)]
        ray.shutdown()
        made.shutdown()
        psutil.wait_procs([p for p in started if p.is_running()], timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


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
