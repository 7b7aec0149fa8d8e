"""Scaling out and in under load: a sixth node joins, a dead node is removed, a live
one leaves, each staged as a plan and committed through `ringstore admin`; partitions
stream to their new holders while writes go on, and no acknowledged write is lost."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import pytest

from tests.harness import error_code, kv_path, run_cli
from tests.e2e.test_ring import RetryingClient, holds
from tests.ring_harness import RingCluster

PARTITIONS = 64


@pytest.fixture
def cluster5(ringstore_bin, tmp_path):
    cluster = RingCluster(ringstore_bin, tmp_path, node_count=5)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


class Load:
    """Writers of unique keys through the ring servers, retrying the other one."""

    def __init__(self, cluster: RingCluster, writers: int = 3):
        self.client = RetryingClient(cluster)
        self.acknowledged: list[str] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.write, args=(worker,)) for worker in range(writers)]

    def write(self, worker: int):
        sequence = 0
        while not self.stop.is_set():
            key = f"load{worker}-{sequence}"
            try:
                reply = self.client.send("PUT", kv_path("default", key), body=key.encode())
                (self.acknowledged if reply.status == 204 else self.failures).append(key if reply.status == 204 else f"{key}: {reply.status}")
            except AssertionError as error:
                self.failures.append(str(error))
            sequence += 1

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        for thread in self.threads:
            thread.join()


def admin_cli(ringstore_bin, cluster: RingCluster, *args: str):
    result = run_cli(ringstore_bin, "admin", *args, "--url", cluster.urls(), "--token", RingCluster.ADMIN_TOKEN)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def wait_for_transition(cluster: RingCluster, timeout: float = 60.0) -> float:
    """Until the committed ring change is complete; returns how long it took."""
    started = time.monotonic()
    while True:
        status = cluster.admin("GET", "/v1/admin/status").json()
        if status["transition"] is None:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, status["transition"]
        time.sleep(0.1)


def owners(cluster: RingCluster) -> Counter:
    return Counter(cluster.admin("GET", "/v1/admin/ring").json()["owners"])


def balanced(counts: Counter) -> bool:
    share = PARTITIONS / len(counts)
    return all(share - 1 <= count <= share + 1 for count in counts.values())


def test_join_a_sixth_node_and_remove_a_dead_one_under_load(ringstore_bin, cluster5):
    """A joining node takes its share while writes go on; a killed node is removed and
    its replicas rebuilt from the others; every acknowledged write reads back, and each
    node owns Q/S ± 1 partitions at the end."""
    n6 = cluster5.add_node("n6").start()
    deadline = time.monotonic() + 10
    while "n6" not in {m["id"] for m in cluster5.admin("GET", "/v1/admin/status").json()["members"]}:
        assert time.monotonic() < deadline, "n6 never registered"
        time.sleep(0.1)

    with Load(cluster5) as load:
        time.sleep(1)
        staged = admin_cli(ringstore_bin, cluster5, "join", "n6")
        assert "join n6" in staged
        admin_cli(ringstore_bin, cluster5, "commit")
        joined_in = wait_for_transition(cluster5)
        counts = owners(cluster5)
        assert set(counts) == {f"n{i}" for i in range(1, 7)} and balanced(counts), counts
        assert n6.request("GET", "/healthz").json()["keys"] > 0

        cluster5.nodes["n3"].kill()
        time.sleep(1)
        admin_cli(ringstore_bin, cluster5, "remove", "n3")
        admin_cli(ringstore_bin, cluster5, "commit")
        removed_in = wait_for_transition(cluster5)
        time.sleep(1)
    counts = owners(cluster5)
    assert "n3" not in counts and balanced(counts), counts
    assert "n3" not in {m["id"] for m in cluster5.admin("GET", "/v1/admin/status").json()["members"]}

    assert not load.failures, load.failures[:5]
    assert len(load.acknowledged) > 100
    rs = cluster5.ring_servers["rs2"]
    lost = [key for key in load.acknowledged if not holds(rs.request("GET", kv_path("default", key)), key.encode())]
    assert not lost, f"{len(lost)} of {len(load.acknowledged)} acknowledged writes lost, e.g. {lost[:5]}"
    # The rebuilt replicas hold the data on their own: every key reads with r=3 (all home replicas).
    missing = [key for key in load.acknowledged[::10] if rs.request("GET", kv_path("default", key) + "?r=3").status not in (200, 300)]
    assert not missing, missing[:5]
    print(f"join done in {joined_in:.1f} s, remove in {removed_in:.1f} s; {len(load.acknowledged)} writes, {load.client.retries} retries")


def test_a_leaving_node_streams_its_partitions_out_first(ringstore_bin, cluster5):
    """A node that leaves keeps serving until its partitions have streamed to the
    others; afterwards it is out of the ring and nothing it held is lost."""
    for index in range(200):
        assert cluster5.ring_servers["rs1"].request("PUT", kv_path("default", f"before{index}"), body=b"x").status == 204
    admin_cli(ringstore_bin, cluster5, "leave", "n2")
    out = admin_cli(ringstore_bin, cluster5, "commit")
    assert "transfers done" in out or "no ring change" in out
    wait_for_transition(cluster5)
    counts = owners(cluster5)
    assert "n2" not in counts and balanced(counts), counts
    # n2 learns that it left and stops answering clients.
    deadline = time.monotonic() + 5
    while cluster5.nodes["n2"].request("GET", "/healthz").json()["ready"]:
        assert time.monotonic() < deadline, "n2 never learned that it left"
        time.sleep(0.1)
    assert cluster5.nodes["n2"].request("GET", kv_path("default", "before1")).status == 503
    cluster5.nodes["n2"].stop()
    rs = cluster5.ring_servers["rs2"]
    for index in range(200):
        assert rs.request("GET", kv_path("default", f"before{index}") + "?r=3").status == 200


def test_admin_api_needs_the_token_and_refuses_nonsense(cluster5):
    """Without the bearer token (or with a wrong one) the admin API answers 401 and
    changes nothing; impossible changes are refused with a reason."""
    for token in (None, "wrong"):
        reply = cluster5.admin("POST", "/v1/admin/leave/n1", token=token)
        assert reply.status == 401 and error_code(reply) == "unauthorized", reply
        assert reply.header("WWW-Authenticate")
    assert cluster5.admin("GET", "/v1/admin/plan").status == 404
    status = cluster5.admin("GET", "/v1/admin/status").json()
    assert status["plan"] is None and status["transition"] is None
    unknown = cluster5.admin("POST", "/v1/admin/join/n42")
    assert unknown.status == 409, unknown
    assert cluster5.admin("POST", "/v1/admin/commit").status == 409
    assert cluster5.admin("GET", "/v1/admin/commit").status == 405
    assert cluster5.admin("GET", "/v1/admin/nothing").status == 404


def transfer_keys_received(node) -> float:
    """A node's `ringstore_transfer_keys_received_total`, 0 before it has any."""
    for line in node.request("GET", "/metrics").body.decode().splitlines():
        if line.startswith("ringstore_transfer_keys_received_total "):
            return float(line.split()[1])
    return 0


def test_a_transfer_interrupted_by_a_crash_resumes(ringstore_bin, cluster5):
    """The joining node is killed while partitions stream to it; the change waits,
    and once the node is back it pulls the rest and the new ring takes effect, with
    every key it should hold."""
    rs1 = cluster5.ring_servers["rs1"]
    body = b"v" * 3000
    for index in range(2000):
        assert rs1.request("PUT", kv_path("default", f"bulk{index}"), body=body).status == 204
    n6 = cluster5.add_node("n6").start()
    deadline = time.monotonic() + 10
    while "n6" not in {m["id"] for m in cluster5.admin("GET", "/v1/admin/status").json()["members"]}:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert cluster5.admin("POST", "/v1/admin/join/n6").status == 200
    assert cluster5.admin("POST", "/v1/admin/commit").status == 202
    # Freeze n6 as soon as it has received its first keys (it pulls, so nothing more
    # arrives), at the latest after 0.2 s, then kill it. A fixed pause alone raced
    # with transfers that finish within it.
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline and transfer_keys_received(n6) == 0:
        time.sleep(0.002)
    n6.process.send_signal(signal.SIGSTOP)
    n6.kill()
    transition = cluster5.admin("GET", "/v1/admin/status").json()["transition"]
    assert transition is not None and transition["transfers_pending"] > 0, "the transfer finished before the crash; nothing was interrupted"
    time.sleep(1)
    assert cluster5.admin("GET", "/v1/admin/status").json()["transition"] is not None, "the ring switched without n6's data"
    n6.start()
    wait_for_transition(cluster5)
    counts = owners(cluster5)
    assert counts["n6"] > 0 and balanced(counts), counts
    # n6 holds its share on its own: reads of its keys with r=3 need every home replica.
    for index in range(0, 2000, 7):
        reply = rs1.request("GET", kv_path("default", f"bulk{index}") + "?r=3")
        assert reply.status == 200 and reply.body == body, (index, reply.status)
