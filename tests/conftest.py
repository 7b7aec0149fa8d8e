"""Fixtures shared by the black-box suites: the binary under test and real nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import NodePool, ringstore_binary
from tests.ring_harness import RingCluster


@pytest.fixture(scope="session")
def ringstore_bin() -> Path:
    """The `ringstore` executable under test ($RINGSTORE_BIN or .build/debug/ringstore)."""
    path = ringstore_binary()
    if not path.is_file():
        pytest.fail(f"{path} does not exist: run `swift build` first, or point RINGSTORE_BIN at a ringstore binary.")
    return path


@pytest.fixture
def nodes(ringstore_bin, tmp_path) -> NodePool:
    """Starts nodes for one test (`nodes.start(*args)`) and stops all of them after it."""
    pool = NodePool(ringstore_bin, tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture
def node(nodes):
    """A fresh node with default options, stopped after the test."""
    return nodes.start()


@pytest.fixture
def ring_cluster(ringstore_bin, tmp_path):
    """Starts a cluster of ring servers and nodes for one test
    (`ring_cluster(node_count, node_args=…)`, arguments as `RingCluster`'s) and
    stops it after the test."""
    started: list[RingCluster] = []

    def start(node_count: int, **options) -> RingCluster:
        cluster = RingCluster(ringstore_bin, tmp_path / f"cluster{len(started) + 1}", node_count, **options)
        started.append(cluster)
        return cluster.start()

    yield start
    for cluster in started:
        cluster.stop()


@pytest.fixture(scope="module")
def module_nodes(ringstore_bin, tmp_path_factory) -> NodePool:
    """Like `nodes`, but shared by every test of a module and stopped after the last one."""
    pool = NodePool(ringstore_bin, tmp_path_factory.mktemp("nodes"))
    yield pool
    pool.stop_all()
