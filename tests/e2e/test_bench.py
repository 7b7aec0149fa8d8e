"""`ringstore bench run`: YCSB-style workloads against real processes, over HTTP,
through the partition-aware client and through the ring servers over the node
protocol, with a JSON result; bad options are refused."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest

from tests.harness import kv_path, run_cli
from tests.ring_harness import RingCluster

OPERATION_FIELDS = {"count", "errors", "per_second", "p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms", "mean_ms"}


def bench(binary, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), "bench", "run", "--quiet", *args], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def result_of(completed: subprocess.CompletedProcess, path) -> dict:
    assert completed.returncode == 0, completed.stderr.decode(errors="replace") + completed.stdout.decode(errors="replace")
    assert "RESULT workload=" in completed.stdout.decode()
    return json.loads(path.read_text())


@pytest.mark.parametrize("args, message", [
    (["--workload", "x"], "--workload"),
    (["--keys", "0"], "--keys"),
    (["--concurrency", "0"], "--concurrency"),
    (["--rate", "0"], "--rate"),
    (["--duration", "-1"], "--duration"),
    (["--operations", "0"], "--operations"),
    (["--distribution", "pareto"], "--distribution"),
    (["--workload", "cas", "--mode", "direct"], "--mode http"),
    (["--workload", "cas", "--mode", "ring"], "--mode http"),
    (["--url", "nowhere"], "--url"),
])
def test_bad_options_are_refused(ringstore_bin, args, message):
    completed = run_cli(ringstore_bin, "bench", "run", *args)
    assert completed.returncode != 0
    assert message in completed.stderr.decode(errors="replace")


def test_an_unreachable_cluster_is_a_clear_failure(ringstore_bin):
    from tests.harness import unused_loopback_port
    completed = run_cli(ringstore_bin, "bench", "run", "--url", f"http://127.0.0.1:{unused_loopback_port()}", "--duration", "1")
    assert completed.returncode == 1
    assert "could not prepare the load" in completed.stderr.decode(errors="replace")


def test_workload_b_against_a_node_mixes_reads_and_updates(ringstore_bin, node, tmp_path):
    """Workload B over HTTP: every key written first, then 95% reads and 5% updates;
    the JSON result gives both operations' percentiles, and no request failed."""
    out = tmp_path / "b.json"
    result = result_of(bench(ringstore_bin, "--url", node.url, "--workload", "b", "--keys", "200", "--concurrency", "8",
                             "--operations", "4000", "--json", str(out)), out)
    reads, updates = result["operations"]["read"], result["operations"]["update"]
    assert reads["count"] + updates["count"] == 4000 == result["total"]["count"]
    assert 0.92 < reads["count"] / 4000 < 0.98
    assert result["total"]["errors"] == 0, result.get("first_error")
    assert set(result["total"]) == OPERATION_FIELDS
    assert 0 < reads["p50_ms"] <= reads["p99_ms"] <= reads["max_ms"]
    assert result["settings"]["workload"] == "b" and result["mode"] == "http"
    # Every key was written by the load phase; updates superseded (no siblings).
    assert node.request("GET", kv_path("default", "bench-199")).status == 200


def test_the_cas_workload_adds_exactly_once_per_acknowledged_operation(ringstore_bin, node, tmp_path):
    """CAS on a table it creates as linearizable: the counters sum to the operations
    that succeeded."""
    out = tmp_path / "cas.json"
    result = result_of(bench(ringstore_bin, "--url", node.url, "--workload", "cas", "--keys", "10", "--concurrency", "4",
                             "--operations", "300", "--json", str(out)), out)
    assert node.request("GET", "/v1/tables/bench_cas").json()["consistency"] == "linearizable"
    assert result["operations"]["cas"]["count"] == 300 and result["total"]["errors"] == 0
    total = 0
    for index in range(10):
        reply = node.request("GET", kv_path("bench_cas", f"bench-{index}"))
        if reply.status == 200:
            total += reply.json()["value"]
    assert total == 300


def test_a_table_of_the_wrong_kind_is_refused(ringstore_bin, node):
    assert node.request("PUT", "/v1/tables/plain", body=b"{}").status in (200, 201)
    completed = run_cli(ringstore_bin, "bench", "run", "--url", node.url, "--workload", "cas", "--table", "plain", "--operations", "1")
    assert completed.returncode == 1
    assert "needs a linearizable table" in completed.stderr.decode(errors="replace")


def test_the_partition_aware_client_runs_workload_a_on_zipfian_keys(ringstore_bin, tmp_path):
    """Direct mode against a ring-server cluster of three nodes: workload A on zipfian
    keys; hot keys are updated concurrently with the contexts last seen, so no request
    fails (no key reaches the sibling limit)."""
    cluster = RingCluster(ringstore_bin, tmp_path, node_count=3)
    try:
        cluster.start()
        out = tmp_path / "a.json"
        result = result_of(bench(ringstore_bin, "--url", cluster.urls(), "--mode", "direct", "--workload", "a",
                                 "--distribution", "zipfian", "--keys", "500", "--concurrency", "16", "--duration", "3",
                                 "--json", str(out)), out)
        assert result["mode"] == "direct" and result["settings"]["distribution"] == "zipfian"
        assert result["total"]["errors"] == 0, result.get("first_error")
        assert result["operations"]["read"]["count"] > 100 and result["operations"]["update"]["count"] > 100
    finally:
        cluster.stop()


def forwarded_requests(proc, outcome: str = "answered") -> int:
    """A ring server's count of clients' node-protocol requests it passed on, by outcome."""
    prefix = f'ringstore_ring_forwarded_requests_total{{outcome="{outcome}"}}'
    metrics = proc.request("GET", "/metrics").body.decode()
    return sum(int(float(line.split()[-1])) for line in metrics.splitlines() if line.startswith(prefix))


def test_the_client_through_the_ring_servers_moves_to_the_other_when_its_ring_server_dies(ringstore_bin, tmp_path):
    """Ring mode: the Swift client sends each request over the node protocol to a ring
    server, which passes it on to a coordinator of the key. Workload A runs without an
    error, every request through the first ring server (the client keeps to one).
    Then a read-only load keeps running without an error while that ring server is
    killed: the client moves to the other one."""
    cluster = RingCluster(ringstore_bin, tmp_path, node_count=3)
    try:
        cluster.start()
        rs1, rs2 = cluster.ring_servers["rs1"], cluster.ring_servers["rs2"]
        out = tmp_path / "ring-a.json"
        result = result_of(bench(ringstore_bin, "--url", cluster.urls(), "--mode", "ring", "--workload", "a", "--keys", "300",
                                 "--concurrency", "8", "--operations", "3000", "--json", str(out)), out)
        assert result["mode"] == "ring" and result["total"]["errors"] == 0, result.get("first_error")
        # The 300 writes of the load phase and the 3,000 operations all went through rs1.
        assert forwarded_requests(rs1) >= 3300
        assert forwarded_requests(rs2) == 0
        assert forwarded_requests(rs1, "unavailable") == forwarded_requests(rs1, "outcome_unknown") == 0

        out = tmp_path / "ring-c.json"
        killer = threading.Timer(1.5, rs1.kill)
        killer.start()
        try:
            completed = bench(ringstore_bin, "--url", cluster.urls(), "--mode", "ring", "--workload", "c", "--keys", "300",
                              "--no-load", "--concurrency", "8", "--duration", "4", "--json", str(out))
        finally:
            killer.join()
        result = result_of(completed, out)
        assert result["total"]["errors"] == 0, result.get("first_error")
        assert result["operations"]["read"]["count"] > 300
        assert forwarded_requests(rs2) > 0
        # Every key written through the ring servers reads back through a node.
        node = cluster.nodes["n1"]
        assert all(node.request("GET", kv_path("default", f"bench-{index}")).status == 200 for index in range(0, 300, 37))
    finally:
        cluster.stop()


def test_an_open_loop_charges_a_stall_to_every_operation_it_delayed(ringstore_bin, node, tmp_path):
    """The node is paused (SIGSTOP) for 1.5 s in the middle of a 5 s load at 200
    operations/s. In the open loop, the ~300 operations due during the pause count
    their latency from when they were due, so p90 reflects the stall; a closed loop
    of 4 tasks sees only 4 slow requests and its p90 stays small (coordinated
    omission)."""
    def run(extra: list[str], name: str) -> dict:
        out = tmp_path / f"{name}.json"
        pauser = threading.Timer(1.5, lambda: (node.process.send_signal(signal.SIGSTOP), time.sleep(1.5),
                                                node.process.send_signal(signal.SIGCONT)))
        pauser.start()
        try:
            completed = bench(ringstore_bin, "--url", node.url, "--workload", "c", "--keys", "100", "--concurrency", "4",
                              "--duration", "5", "--json", str(out), *extra)
        finally:
            pauser.join()
        return result_of(completed, out)

    open_loop = run(["--rate", "200"], "open")
    closed_loop = run([], "closed")
    assert open_loop["settings"]["target_rate"] == 200
    assert 800 <= open_loop["total"]["count"] <= 1001
    assert open_loop["total"]["p90_ms"] > 300, open_loop["total"]
    assert open_loop["total"]["max_ms"] > 1000
    assert closed_loop["total"]["p90_ms"] < 100, closed_loop["total"]
