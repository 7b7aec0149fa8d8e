"""A static cluster of real node processes on loopback: replication, sloppy quorum,
hinted hand-off after a SIGKILL, and read repair, seen from the HTTP API."""

from __future__ import annotations

import random
import threading
import time

import pytest

from tests.harness import kv_path, request as http_request
from tests.ports import reserve

CONTEXT = "X-Ringstore-Context"


def free_ports(count: int) -> list[int]:
    """Ports for --rpc, which peers must know up front (see tests/ports.py)."""
    return reserve(count)


class Cluster:
    """`count` nodes n1…nN that know each other through --peers."""

    def __init__(self, pool, count: int, extra=()):
        self.pool = pool
        self.ids = [f"n{i + 1}" for i in range(count)]
        ports = free_ports(count)
        peers = ",".join(f"{node_id}=127.0.0.1:{port}" for node_id, port in zip(self.ids, ports))
        self.nodes = {}
        for node_id, port in zip(self.ids, ports):
            self.nodes[node_id] = pool.start(
                "--id", node_id, "--rpc", f"127.0.0.1:{port}", "--peers", peers,
                "--request-timeout-milliseconds", "1000", "--durability", "always", *extra)
        self.wait_until_all_reachable()

    def request(self, node_id, method, path, **kwargs):
        return http_request(self.nodes[node_id].port, method, path, **kwargs)

    def cluster_view(self, node_id):
        return self.request(node_id, "GET", "/v1/cluster").json()

    def live(self):
        return [node_id for node_id in self.ids if self.nodes[node_id].running]

    def wait_until_all_reachable(self, timeout=30.0):
        """Until every running node sees every running node as reachable."""
        deadline = time.monotonic() + timeout
        while True:
            live = set(self.live())
            if all({m["id"] for m in self.cluster_view(n)["members"] if m["reachable"]} >= live for n in live):
                return
            assert time.monotonic() < deadline, {n: self.cluster_view(n) for n in live}
            time.sleep(0.1)

    def hints_pending(self):
        return sum(self.cluster_view(node_id)["hints_pending"] for node_id in self.live())


@pytest.fixture
def cluster5(nodes):
    return Cluster(nodes, 5)


@pytest.fixture
def cluster3(nodes):
    return Cluster(nodes, 3)


def test_a_write_on_one_node_is_read_on_every_node(cluster3):
    """A write through n1 is stored on N=3 replicas: every node reads it back with r=3."""
    reply = cluster3.request("n1", "PUT", kv_path("default", "greeting"), body=b"hello", headers={"Content-Type": "text/plain"})
    assert reply.status == 204, reply
    for node_id in cluster3.ids:
        read = cluster3.request(node_id, "GET", kv_path("default", "greeting") + "?r=3")
        assert read.status == 200, read
        assert read.body == b"hello"
        assert read.header("Content-Type") == "text/plain"
    located = cluster3.request("n2", "GET", "/v1/cluster/locate/default/greeting").json()
    assert sorted(located["preference_list"]) == ["n1", "n2", "n3"]
    assert [target["hint_for"] for target in located["targets"]] == [None, None, None]


def test_concurrent_writes_through_two_nodes_become_siblings(cluster3):
    """Two writes without a context through different coordinators are both kept; a write with the read's context resolves them."""
    path = kv_path("default", "cart")
    assert cluster3.request("n1", "PUT", path, body=b"book").status == 204
    assert cluster3.request("n2", "PUT", path, body=b"pen").status == 204
    read = cluster3.request("n3", "GET", path + "?r=3")
    assert read.status == 300, read
    values = sorted(__import__("base64").b64decode(s["value_base64"]) for s in read.json()["siblings"])
    assert values == [b"book", b"pen"]
    assert cluster3.request("n3", "PUT", path, body=b"book+pen", headers={CONTEXT: read.header(CONTEXT)}).status == 204
    final = cluster3.request("n1", "GET", path + "?r=3")
    assert final.status == 200 and final.body == b"book+pen", final


def test_quorum_failures_are_503_with_the_numbers(cluster3):
    """With one of three nodes dead, w=3 is refused with 503 insufficient_replicas while w=2 succeeds."""
    cluster3.nodes["n3"].kill()
    deadline = time.monotonic() + 15
    while any(m["id"] == "n3" and m["reachable"] for m in cluster3.cluster_view("n1")["members"]):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    refused = cluster3.request("n1", "PUT", kv_path("default", "strict") + "?w=3", body=b"x")
    assert refused.status == 503, refused
    assert refused.json()["error"] == "insufficient_replicas"
    assert refused.header("Retry-After") is not None
    assert cluster3.request("n1", "PUT", kv_path("default", "relaxed") + "?w=2", body=b"x").status == 204


def test_a_restarted_node_coordinates_with_every_replica_from_its_first_request(cluster3):
    """A node counts a peer once it has answered a ping; a restarted node pings them
    all before it listens, so the first read it coordinates can already use r=3."""
    for attempt in range(3):
        # The others take up to a few seconds to count the restarted node again
        # (their failure detectors, and their reconnection backoff): start each
        # attempt from a cluster where every node sees every other.
        cluster3.wait_until_all_reachable()
        path = kv_path("default", f"restart{attempt}")
        assert cluster3.request("n2", "PUT", path + "?w=3", body=b"kept").status == 204
        cluster3.nodes["n1"].kill()
        cluster3.nodes["n1"].start()
        read = cluster3.request("n1", "GET", path + "?r=3")
        assert read.status == 200 and read.body == b"kept", (attempt, read)


def test_the_others_count_a_restarted_node_again_at_once(cluster3):
    """While a node is down the others' pings to it fail and back off (up to 2 s
    between connects); a restarting node pings them, and each pings it back at once,
    past its backoff, so it counts the node again within a round trip."""

    def n2_counts_n1() -> bool:
        return any(m["id"] == "n1" and m["reachable"] for m in cluster3.cluster_view("n2")["members"])

    for attempt in range(2):
        cluster3.wait_until_all_reachable()
        cluster3.nodes["n1"].kill()
        deadline = time.monotonic() + 15
        while n2_counts_n1():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(3)  # n2's connects to n1 keep failing: its backoff grows to its 2 s ceiling
        cluster3.nodes["n1"].start()
        started = time.monotonic()
        while not n2_counts_n1():
            assert time.monotonic() - started < 0.5, f"attempt {attempt}: n2 took over 0.5 s to count the restarted n1"
            time.sleep(0.02)
        path = kv_path("default", f"back{attempt}")
        assert cluster3.request("n2", "PUT", path + "?w=3", body=b"all three").status == 204


def test_tables_created_on_one_node_exist_on_all(cluster3):
    """A table created through one node is known to every node, and its keys replicate."""
    assert cluster3.request("n1", "PUT", "/v1/tables/courses", body=b"{}").status == 201
    deadline = time.monotonic() + 15
    while any("courses" not in [t["name"] for t in cluster3.request(n, "GET", "/v1/tables").json()["tables"]] for n in cluster3.ids):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert cluster3.request("n2", "PUT", kv_path("courses", "cs101"), body=b"40 seats").status == 204
    assert cluster3.request("n3", "GET", kv_path("courses", "cs101") + "?r=3").body == b"40 seats"


def test_acknowledged_writes_survive_a_killed_node_through_hinted_handoff(cluster5):
    """Writes with w=2 keep succeeding while a node is SIGKILLed; fallbacks keep hints, hand them off after the restart, and every acknowledged write reads back with r=3."""
    acknowledged: dict[str, bytes] = {}
    failures = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(index: int):
        rng = random.Random(index)
        sequence = 0
        while not stop.is_set():
            sequence += 1
            key = f"w{index}-{sequence}"
            value = f"value of {key}".encode()
            target = rng.choice(cluster5.live())
            try:
                reply = cluster5.request(target, "PUT", kv_path("default", key) + "?w=2", body=value)
            except OSError:
                continue  # the coordinator died mid-request: indeterminate
            with lock:
                if reply.status == 204:
                    acknowledged[key] = value
                else:
                    failures.append(reply.status)

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    cluster5.nodes["n2"].kill()
    time.sleep(3.0)
    hints_while_down = cluster5.hints_pending()
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join()
    assert len(acknowledged) > 100, f"only {len(acknowledged)} writes were acknowledged; failures: {failures[:10]}"
    assert hints_while_down > 0, "fallbacks should hold hints for n2 while it is down"

    cluster5.nodes["n2"].start()
    cluster5.wait_until_all_reachable()
    deadline = time.monotonic() + 60
    while cluster5.hints_pending() > 0:
        assert time.monotonic() < deadline, f"hints did not drain: {cluster5.hints_pending()} left"
        time.sleep(0.2)

    missing = []
    for key, value in acknowledged.items():
        reply = cluster5.request(random.choice(cluster5.ids), "GET", kv_path("default", key) + "?r=3")
        if reply.status != 200 or reply.body != value:
            missing.append((key, reply.status))
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged writes are missing at r=3: {missing[:10]}"
    print(f"acknowledged {len(acknowledged)} writes, {len(failures)} refused, {hints_while_down} hints while n2 was down")
