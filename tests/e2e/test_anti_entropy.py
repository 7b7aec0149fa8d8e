"""Active anti-entropy: a node that lost its disk gets its replicas back by Merkle
tree exchanges, on demand (`ringstore admin repair`) and in the background, with
deleted keys staying deleted."""

from __future__ import annotations

import shutil
import time

import pytest

from tests.harness import kv_path, run_cli
from tests.ring_harness import RingCluster

KEYS = 300


@pytest.fixture
def cluster3(ring_cluster):
    return ring_cluster(3)


def keys_held(proc) -> int:
    return proc.request("GET", "/healthz").json()["keys"]


def lose_disk(cluster: RingCluster, name: str) -> None:
    """Kills a node, deletes its stored data and hints, and starts it again."""
    proc = cluster.nodes[name]
    proc.kill()
    for folder in ("storage", "hints"):
        shutil.rmtree(cluster.folder / name / folder, ignore_errors=True)
    proc.start()
    cluster.wait_until_formed()


def repair(ringstore_bin, cluster: RingCluster) -> str:
    result = run_cli(ringstore_bin, "admin", "repair", "--url", cluster.urls(), "--token", RingCluster.ADMIN_TOKEN)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def test_a_node_that_lost_its_disk_is_repaired(ringstore_bin, cluster3):
    """With N=3 on three nodes every node holds every key. After n3 loses its disk,
    `ringstore admin repair` copies the keys back to it (and reports how many), a
    second repair finds nothing left to do, deleted keys stay deleted, and every
    key reads back from all three replicas."""
    rs1 = cluster3.ring_servers["rs1"]
    for index in range(KEYS):
        assert rs1.request("PUT", kv_path("default", f"aae{index}"), body=f"value {index}".encode()).status == 204
    for index in range(0, KEYS, 10):
        # A delete supersedes what the read saw (without the context it would be a sibling).
        context = rs1.request("GET", kv_path("default", f"aae{index}")).header("X-Ringstore-Context")
        assert rs1.request("DELETE", kv_path("default", f"aae{index}"), headers={"X-Ringstore-Context": context}).status == 204
    before = keys_held(cluster3.nodes["n1"])
    assert before >= KEYS

    lose_disk(cluster3, "n3")
    assert keys_held(cluster3.nodes["n3"]) < before

    out = repair(ringstore_bin, cluster3)
    assert "keys repaired" in out, out
    repaired = int(out.split(" keys repaired")[0].split()[-1])
    # Background rounds may have repaired some keys first; by the end of the
    # requested round (on every node) n3 holds them all.
    assert repaired > 0, out
    assert keys_held(cluster3.nodes["n3"]) == before

    again = repair(ringstore_bin, cluster3)
    assert " 0 keys repaired" in again.splitlines()[0], again

    n3 = cluster3.nodes["n3"]
    for index in range(KEYS):
        # n3's own copy, with the other two: r=3 needs every home replica.
        reply = rs1.request("GET", kv_path("default", f"aae{index}") + "?r=3")
        if index % 10 == 0:
            assert reply.status == 404, (index, reply)
        else:
            assert reply.status == 200 and reply.body == f"value {index}".encode(), (index, reply)
    metrics = n3.request("GET", "/metrics").body.decode()
    assert "ringstore_aae_tree_rebuilds_total" in metrics


def test_background_exchanges_repair_without_being_asked(cluster3):
    """Without an admin request, the background rounds bring a wiped node back to
    the same keys as the others."""
    rs1 = cluster3.ring_servers["rs1"]
    for index in range(100):
        assert rs1.request("PUT", kv_path("default", f"bg{index}"), body=b"x").status == 204
    before = keys_held(cluster3.nodes["n1"])
    lose_disk(cluster3, "n2")
    deadline = time.monotonic() + 45
    while keys_held(cluster3.nodes["n2"]) < before:
        assert time.monotonic() < deadline, f"n2 holds {keys_held(cluster3.nodes['n2'])} of {before} keys after 45 s"
        time.sleep(0.5)
    metrics = cluster3.nodes["n2"].request("GET", "/metrics").body.decode()
    repaired = [line for line in metrics.splitlines() if line.startswith("ringstore_aae_keys_repaired_total")]
    exchanges = [line for line in metrics.splitlines() if line.startswith("ringstore_aae_exchanges_total")]
    assert exchanges and float(exchanges[0].split()[-1]) > 0, metrics[:500]
    assert repaired, "no ringstore_aae_keys_repaired_total on n2"


@pytest.fixture
def purging3(ring_cluster):
    """Three nodes that try to purge a tombstone one second after they first hold it."""
    return ring_cluster(3, node_args=["--tombstone-grace-seconds", "1", "--anti-entropy-pause-milliseconds", "20"])


def tombstones_purged(proc) -> float:
    metrics = proc.request("GET", "/metrics").body.decode()
    lines = [line for line in metrics.splitlines() if line.startswith("ringstore_aae_tombstones_purged_total")]
    return float(lines[0].split()[-1]) if lines else 0.0


def test_tombstones_are_purged_only_once_every_replica_holds_them(purging3):
    """n3 is down while keys are deleted, so it keeps their old values: no node
    purges a tombstone meanwhile, however long past the grace period. Once n3 is
    back, anti-entropy hands it the tombstones, every node removes the deleted keys,
    and none of them comes back, even when read from all three replicas."""
    cluster, rs1 = purging3, purging3.ring_servers["rs1"]
    count = 60
    for index in range(count):
        assert rs1.request("PUT", kv_path("default", f"gone{index}"), body=f"old {index}".encode()).status == 204
    held = {name: keys_held(proc) for name, proc in cluster.nodes.items()}
    assert all(keys >= count for keys in held.values()), held

    cluster.nodes["n3"].kill()
    deleted = range(0, count, 2)
    for index in deleted:
        context = rs1.request("GET", kv_path("default", f"gone{index}")).header("X-Ringstore-Context")
        assert rs1.request("DELETE", kv_path("default", f"gone{index}"), headers={"X-Ringstore-Context": context}).status == 204
    time.sleep(4)  # four grace periods and many rounds: with n3 away, nothing may go
    for name in ("n1", "n2"):
        assert tombstones_purged(cluster.nodes[name]) == 0, name
        assert keys_held(cluster.nodes[name]) == held[name], name

    cluster.nodes["n3"].start()
    cluster.wait_until_formed()
    deadline = time.monotonic() + 45
    while any(keys_held(proc) != held[name] - len(deleted) for name, proc in cluster.nodes.items()):
        assert time.monotonic() < deadline, {name: keys_held(proc) for name, proc in cluster.nodes.items()}
        time.sleep(0.5)
    # Each replica removed each deleted key once (N=3 on three nodes: all hold all).
    assert sum(tombstones_purged(proc) for proc in cluster.nodes.values()) == 3 * len(deleted)
    for index in range(count):
        reply = rs1.request("GET", kv_path("default", f"gone{index}") + "?r=3")
        if index in deleted:
            assert reply.status == 404, (index, reply)
        else:
            assert reply.status == 200 and reply.body == f"old {index}".encode(), (index, reply)
    # Exchanges find nothing to repair: no replica brings an old value back.
    time.sleep(1)
    assert all(keys_held(proc) == held[name] - len(deleted) for name, proc in cluster.nodes.items())
    # A purged key written again is a key like any other.
    assert rs1.request("PUT", kv_path("default", "gone0"), body=b"new").status == 204
    reply = rs1.request("GET", kv_path("default", "gone0") + "?r=3")
    assert reply.status == 200 and reply.body == b"new", reply


def test_each_compared_partition_reports_its_exchange_age(ringstore_bin, cluster3):
    """Every table-partition a node compares has a gauge of the seconds since its
    last completed exchange, and a requested round brings them all down."""
    repair(ringstore_bin, cluster3)
    time.sleep(1.5)  # the gauges are set every second
    metrics = cluster3.nodes["n1"].request("GET", "/metrics").body.decode()
    ages = [line for line in metrics.splitlines() if line.startswith("ringstore_aae_exchange_age_seconds{")]
    partitions = {line.split('partition="')[1].split('"')[0] for line in ages if 'table="default"' in line}
    ring = cluster3.nodes["n1"].request("GET", "/v1/cluster/ring").json()
    # N=3 on three nodes: n1 is a home replica of every partition, compared with the next.
    assert len(partitions) == ring["partitions"], ages[:5]
    assert max(float(line.split()[-1]) for line in ages) < 10, ages[:5]
