"""Fixtures of the cluster tests: Ray present (or a skip that says why), and a multi-node Ray cluster on this
machine shared by the tests of a module (its processes: tests/fixtures/clusterprocs.py)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_ready() -> None:
    """Skip (with the reason) where Ray is not installed; fail in CI, which installs it (the test extra)."""
    try:
        import ray.cluster_utils  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI is set but ray is not installed: pip install -e '.[test]'")
        pytest.skip("ray is not installed: pip install -e '.[test]' (or '.[cluster]')")


@pytest.fixture(scope="module")
def ray_cluster(ray_ready):
    """A head that runs no workers (0 CPUs) and 3 one-CPU nodes, like three single-GPU machines; start-up
    takes 25-40 s here, so the tests of a module share it (a test that removes a node adds one back)."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(3):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()
