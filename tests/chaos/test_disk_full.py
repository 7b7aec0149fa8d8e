"""A full disk under a node's membership state: a node that cannot write its promise
to the ring servers does not answer them, keeps running, and catches up once space
returns; the cluster changes without it meanwhile."""

from __future__ import annotations

import time

from tests.chaos.cluster import ChaosCluster

TMPFS_MEBIBYTES = 24


def knows_table(proc, name: str) -> bool:
    try:
        return proc.request("GET", f"/v1/tables/{name}").status == 200
    except OSError:
        return False


def test_a_node_whose_disk_is_full_skips_configurations_and_catches_up(needs_root, ringstore_bin, run_folder):
    """n1's data folder is a small tmpfs, filled up. Tables created through the ring
    server commit with the other four nodes (each change makes every node write its
    membership state); n1 stays up, never adopts a configuration it could not write,
    and adopts the latest one within 20 s of its disk being freed."""
    cluster = ChaosCluster(ringstore_bin, run_folder, tmpfs_node="n1", tmpfs_mebibytes=TMPFS_MEBIBYTES)
    try:
        cluster.start()
        assert cluster.tmpfs_error is None, cluster.tmpfs_error
        n1 = cluster.nodes["n1"]
        cluster.fill_disk("n1")

        created = []
        for index in range(3):
            name = f"full{index}"
            reply = cluster.any_ring_server().request("PUT", f"/v1/tables/{name}", body='{"n": 3}')
            assert reply.status in (200, 201), f"creating {name} with n1's disk full: {reply}"
            created.append(name)
        others = [proc for name, proc in cluster.nodes.items() if name != "n1"]
        deadline = time.monotonic() + 10
        while not all(knows_table(proc, created[-1]) for proc in others):
            assert time.monotonic() < deadline, "the other nodes did not adopt the tables"
            time.sleep(0.1)
        time.sleep(2)  # several heartbeats and offers reach n1 meanwhile
        assert n1.running and not n1.crashed(), f"n1 exited while its disk was full:\n{n1.log_text()[-3000:]}"
        assert not any(knows_table(n1, name) for name in created), "n1 adopted a configuration it could not store"
        assert "could not write the membership state file" in n1.log_text()

        cluster.free_disk("n1")
        deadline = time.monotonic() + 20
        while not all(knows_table(n1, name) for name in created):
            assert time.monotonic() < deadline, f"n1 did not catch up within 20 s of its disk being freed:\n{n1.log_text()[-3000:]}"
            time.sleep(0.2)
        assert n1.running and not n1.crashed()
    finally:
        cluster.stop()
