"""Ring servers as real processes: the cluster forms through them, both route the
client API, the secondary takes over from a primary killed under load, an old
primary comes back as secondary, and nodes keep serving with both ring servers down."""

from __future__ import annotations

import base64
import json
import signal
import threading
import time

import pytest

from tests.harness import error_code, kv_path, run_cli
from tests.ring_harness import RingCluster


@pytest.fixture
def ring_cluster(ringstore_bin, tmp_path):
    cluster = RingCluster(ringstore_bin, tmp_path, node_count=3)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


class RetryingClient:
    """A client that knows both ring servers and moves to the other when one fails,
    as the CLI and the web app do. Counts what it could not get done."""

    def __init__(self, cluster: RingCluster, attempts: int = 40):
        self.servers = list(cluster.ring_servers.values())
        self.attempts = attempts
        self.retries = 0

    def send(self, method, path, **kwargs):
        last = None
        for attempt in range(self.attempts):
            server = self.servers[attempt % 2]
            try:
                reply = server.request(method, path, **kwargs)
                if reply.status < 500:
                    return reply
                last = reply
            except OSError as error:
                last = error
            self.retries += 1
            time.sleep(0.1)
        raise AssertionError(f"{method} {path} failed {self.attempts} times; last: {last}")


def holds(reply, value: bytes) -> bool:
    """Whether a read returned `value`: alone, or as every sibling (a write retried on
    the other ring server after its first attempt was cut off may land twice, and
    without a context the two land as concurrent versions of the same value)."""
    if reply.status == 200:
        return reply.body == value
    if reply.status == 300:
        siblings = reply.json()["siblings"]
        return all(base64.b64decode(s["value_base64"]) == value for s in siblings)
    return False


def test_the_cluster_forms_and_both_ring_servers_serve_the_api(ring_cluster):
    """Both ring servers route reads and writes to the nodes; a table created through a
    node or the secondary reaches every process; /v1/cluster shows one primary."""
    rs1, rs2 = ring_cluster.ring_servers["rs1"], ring_cluster.ring_servers["rs2"]
    assert ring_cluster.view("rs1")["role"] == "primary"
    assert ring_cluster.view("rs2")["role"] == "secondary"
    assert ring_cluster.view("rs2")["primary"] == "rs1"
    ring = rs2.request("GET", "/v1/cluster/ring").json()
    assert ring["partitions"] == 64 and len(ring["owners"]) == 64
    assert {m["id"] for m in ring["members"]} == {"n1", "n2", "n3"}
    assert all(m["rpc"] and m["http"] for m in ring["members"])

    assert rs1.request("PUT", kv_path("default", "hello"), body=b"world").status == 204
    assert rs2.request("GET", kv_path("default", "hello")).body == b"world"
    assert ring_cluster.nodes["n3"].request("GET", kv_path("default", "hello")).body == b"world"

    created = ring_cluster.nodes["n2"].request("PUT", "/v1/tables/courses", body=json.dumps({"n": 3, "r": 2, "w": 2}))
    assert created.status == 201, created
    for proc in [rs1, rs2, *ring_cluster.nodes.values()]:
        deadline = time.monotonic() + 5
        while proc.request("GET", "/v1/tables/courses").status != 200:
            assert time.monotonic() < deadline, f"{proc.name} never learned the table"
            time.sleep(0.05)
    assert rs2.request("PUT", kv_path("courses", "c1"), body=b"x").status == 204
    assert rs2.request("DELETE", "/v1/tables/courses").status == 204
    for proc in [rs1, rs2, *ring_cluster.nodes.values()]:
        deadline = time.monotonic() + 5
        while proc.request("GET", "/v1/tables/courses").status != 404:
            assert time.monotonic() < deadline, f"{proc.name} still has the dropped table"
            time.sleep(0.05)
    bad = rs1.request("PUT", "/v1/tables/bad", body=json.dumps({"n": 7}))
    assert bad.status == 400 and error_code(bad) == "invalid_table"


def test_secondary_takes_over_from_a_primary_killed_under_load(ring_cluster):
    """kill -9 of the primary during a steady write load: the secondary becomes primary
    within 3 s, a client that retries the other ring server loses no request, and
    every acknowledged write is read back afterwards."""
    client = RetryingClient(ring_cluster)
    acknowledged: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def writer(worker: int):
        sequence = 0
        while not stop.is_set():
            key = f"w{worker}-{sequence}"
            try:
                reply = client.send("PUT", kv_path("default", key), body=key.encode())
                if reply.status == 204:
                    acknowledged.append(key)
                else:
                    failures.append(f"{key}: {reply.status}")
            except AssertionError as error:
                failures.append(str(error))
            sequence += 1

    threads = [threading.Thread(target=writer, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    killed_at = time.monotonic()
    ring_cluster.ring_servers["rs1"].kill()
    while ring_cluster.role("rs2") != "primary":
        assert time.monotonic() - killed_at < 3.0, "the secondary did not take over within 3 s"
        time.sleep(0.05)
    took_over = time.monotonic() - killed_at
    time.sleep(1.5)
    stop.set()
    for thread in threads:
        thread.join()

    assert not failures, failures[:5]
    assert len(acknowledged) > 50, len(acknowledged)
    view = ring_cluster.view("rs2")
    assert view["term"] > 1 and view["primary"] == "rs2", view
    rs2 = ring_cluster.ring_servers["rs2"]
    lost = [key for key in acknowledged if not holds(rs2.request("GET", kv_path("default", key)), key.encode())]
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:5]}"
    # The new primary takes cluster changes.
    assert rs2.request("PUT", "/v1/tables/after", body=json.dumps({})).status == 201
    print(f"secondary took over {took_over:.2f} s after the kill; {len(acknowledged)} writes, {client.retries} retries")


def test_a_returning_old_primary_serves_as_secondary(ring_cluster):
    """The old primary, restarted after a failover, learns the higher term and follows
    the new primary. Until it hears of that term it may still call itself primary of its
    old term, but nothing it offers in that term can be accepted: it never commits a
    configuration, and the new primary keeps its role throughout."""
    ring_cluster.ring_servers["rs1"].kill()
    deadline = time.monotonic() + 5
    while ring_cluster.role("rs2") != "primary":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rs2 = ring_cluster.ring_servers["rs2"]
    assert rs2.request("PUT", "/v1/tables/during", body=json.dumps({})).status == 201
    before = ring_cluster.view("rs2")["configuration"]
    old = None
    ring_cluster.ring_servers["rs1"].start()
    deadline = time.monotonic() + 5
    while True:
        view = ring_cluster.view("rs1")
        if view["role"] == "secondary" and view["primary"] == "rs2":
            break
        if view["role"] == "primary":
            assert view["term"] == 1, view
            old = old or view["configuration"]
            assert view["configuration"] == old, f"the deposed primary committed in its old term: {view}"
        assert ring_cluster.view("rs2")["role"] == "primary"
        assert time.monotonic() < deadline, view
        time.sleep(0.02)
    assert ring_cluster.view("rs1")["configuration"] == before
    assert ring_cluster.primary() == "rs2"
    assert ring_cluster.ring_servers["rs1"].request("GET", "/v1/tables/during").status == 200


def test_nodes_serve_from_their_cached_ring_with_both_ring_servers_down(ring_cluster):
    """With both ring servers gone, nodes still read and write, also after a restart."""
    for proc in ring_cluster.ring_servers.values():
        proc.kill()
    n1, n3 = ring_cluster.nodes["n1"], ring_cluster.nodes["n3"]
    assert n1.request("PUT", kv_path("default", "alone"), body=b"still here").status == 204
    assert n3.request("GET", kv_path("default", "alone")).body == b"still here"
    n3.stop()
    n3.start()
    deadline = time.monotonic() + 10
    while n3.request("GET", kv_path("default", "alone")).status != 200:
        assert time.monotonic() < deadline, n3.log_tail()
        time.sleep(0.1)
    assert n3.request("GET", "/healthz").json()["ready"] is True


def test_a_read_sent_to_a_hung_coordinator_is_answered_by_the_next(ring_cluster):
    """A node stops answering (SIGSTOP) just as a read is routed to it: the ring server
    moves the read on to the key's next coordinator once the first does not answer,
    instead of answering 503 as it must for a write (a read changed nothing)."""
    rs1 = ring_cluster.ring_servers["rs1"]
    keys = [key for key in (f"k{i}" for i in range(300))
            if rs1.request("GET", f"/v1/cluster/locate/default/{key}").json()["preference_list"][0] == "n1"][:2]
    assert len(keys) == 2
    for key in keys:
        assert rs1.request("PUT", kv_path("default", key), body=b"kept").status == 204
    n1 = ring_cluster.nodes["n1"]
    n1.process.send_signal(signal.SIGSTOP)
    try:
        read = rs1.request("GET", kv_path("default", keys[0]), timeout=20)
        assert read.status == 200 and read.body == b"kept", read
        # A write sent to the hung node meanwhile may or may not have been applied:
        # it is answered 503, or by another coordinator once n1 is known down.
        write = rs1.request("PUT", kv_path("default", keys[1]), body=b"new", timeout=20)
        assert write.status in (204, 503), write
    finally:
        n1.process.send_signal(signal.SIGCONT)


def test_the_cli_through_the_ring_servers_reports_a_write_to_a_hung_coordinator_as_unknown(ringstore_bin, ring_cluster):
    """`--through-ring-servers`: the CLI sends its request over the node protocol to a
    ring server, which passes it on. A write passed on to a node that has just stopped
    answering (SIGSTOP) is reported as of unknown outcome, not sent anywhere else; a
    read is moved on to the key's next coordinator and answered."""
    rs1 = ring_cluster.ring_servers["rs1"]
    keys = [key for key in (f"k{i}" for i in range(300))
            if rs1.request("GET", f"/v1/cluster/locate/default/{key}").json()["preference_list"][0] == "n1"][:2]
    assert len(keys) == 2
    through = ["--url", ring_cluster.urls(), "--through-ring-servers"]
    written = run_cli(ringstore_bin, "put", *through, keys[0], "kept")
    assert written.returncode == 0, written.stderr
    n1 = ring_cluster.nodes["n1"]
    n1.process.send_signal(signal.SIGSTOP)
    try:
        write = run_cli(ringstore_bin, "put", *through, keys[1], "new")
        assert write.returncode == 2, (write.stdout, write.stderr)
        assert "may or may not have been applied" in write.stderr.decode(), write.stderr
        read = run_cli(ringstore_bin, "get", *through, keys[0])
        assert read.returncode == 0 and read.stdout == b"kept", (read.stdout, read.stderr)
    finally:
        n1.process.send_signal(signal.SIGCONT)
    metrics = rs1.request("GET", "/metrics").body.decode()
    assert 'ringstore_ring_forwarded_requests_total{outcome="outcome_unknown"} 1' in metrics, metrics


@pytest.mark.parametrize("args, message", [
    (["--role", "leader"], "--role must be primary or secondary"),
    (["--role", "primary", "--peer", "nonsense"], "--peer takes ID=HOST:PORT"),
    (["--role", "primary", "--peer", "rs1=127.0.0.1:1"], "own id"),
    (["--role", "primary", "--initial-nodes", "0"], "--initial-nodes"),
])
def test_ring_command_rejects_bad_options(ringstore_bin, tmp_path, args, message):
    """Bad options of `ringstore ring` exit non-zero with a clear message and start nothing."""
    base = ["ring", "--id", "rs1", "--data", str(tmp_path / "rs"), "--peer", "rs2=127.0.0.1:1"]
    result = run_cli(ringstore_bin, *base, *args)
    assert result.returncode != 0
    assert message in result.stderr.decode(), result.stderr
    assert not (tmp_path / "rs").exists()


def test_node_join_rejects_bad_options(ringstore_bin, tmp_path):
    """`--join` with --peers, or a join address that is not HOST:PORT, is refused."""
    base = ["node", "--id", "n1", "--data", str(tmp_path / "n"), "--rpc", "127.0.0.1:7001", "--http", "127.0.0.1:7002"]
    both = run_cli(ringstore_bin, *base, "--join", "127.0.0.1:1", "--peers", "n1=127.0.0.1:7001")
    assert both.returncode != 0 and "exclude each other" in both.stderr.decode()
    bad = run_cli(ringstore_bin, *base, "--join", "nowhere")
    assert bad.returncode != 0 and "--join takes" in bad.stderr.decode()
    assert not (tmp_path / "n").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--tombstone-grace-seconds", "-2", "--tombstone-grace-seconds must be 0 or more"),
    ("--anti-entropy-pause-milliseconds", "-1", "--anti-entropy-pause-milliseconds must be 0 or more"),
    ("--request-timeout-milliseconds", "0", "--request-timeout-milliseconds must be positive"),
    ("--cache-mb", "-1", "--cache-mb must be 0 to 65536"),
    ("--cache-mb", "70000", "--cache-mb must be 0 to 65536"),
])
def test_node_rejects_bad_anti_entropy_and_timeout_options(ringstore_bin, tmp_path, option, value, message):
    result = run_cli(ringstore_bin, "node", "--data", str(tmp_path / "n"), "--http", "127.0.0.1:7002", f"{option}={value}")
    assert result.returncode != 0
    assert message in result.stderr.decode(), result.stderr
    assert not (tmp_path / "n").exists()
