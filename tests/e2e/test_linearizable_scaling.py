"""Linearizable keys while the ring changes: a node joins and another leaves while
clients increment counters; no acknowledged increment is lost, none is applied twice,
and operations on moving partitions are refused (503, not applied) rather than run
on two disjoint majorities."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import pytest

from tests.e2e.test_scaling import admin_cli, wait_for_transition
from tests.ring_harness import RingCluster

KEYS = [f"counter{index}" for index in range(24)]


@pytest.fixture
def cluster5(ringstore_bin, tmp_path):
    cluster = RingCluster(ringstore_bin, tmp_path, node_count=5)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


class Incrementers:
    """Threads that add 1 to the counters in turn through both ring servers, recording
    per key what was acknowledged, what ended with an unknown outcome, and what was
    refused as not applied (and retried)."""

    def __init__(self, cluster: RingCluster, threads: int = 4):
        self.servers = list(cluster.ring_servers.values())
        self.acknowledged: Counter = Counter()
        self.unknown: Counter = Counter()
        self.not_applied: Counter = Counter()
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(index,)) for index in range(threads)]

    def run(self, index: int) -> None:
        step = 0
        while not self.stop.is_set():
            key = KEYS[(index * 7 + step) % len(KEYS)]
            server = self.servers[step % 2]
            step += 1
            try:
                reply = server.request("POST", f"/v1/kv/seats/{key}/add?delta=1")
            except OSError as error:
                # The request may have reached the ring server: its outcome is unknown.
                with self.lock:
                    self.unknown[key] += 1
                    self.errors.append(f"{key}: {error}")
                continue
            with self.lock:
                if reply.status == 200:
                    self.acknowledged[key] += 1
                elif reply.status == 503 and reply.json().get("outcome") == "not_applied":
                    self.not_applied[reply.json()["error"]] += 1
                    time.sleep(0.02)
                elif reply.status == 503 and reply.json().get("outcome") == "unknown":
                    self.unknown[key] += 1
                else:
                    self.errors.append(f"{key}: {reply.status} {reply.body[:200]!r}")

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        for thread in self.threads:
            thread.join()


class Pauser:
    """Pauses one node at a time (SIGSTOP for a moment, then SIGCONT), so that some
    replicas miss accepts and lag: only the acceptor states that move with a
    partition can then tell its new replica what was chosen."""

    def __init__(self, cluster: RingCluster, names: list[str]):
        self.procs = [cluster.nodes[name] for name in names]
        self.pauses = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        index = 0
        while not self.stop.is_set():
            proc = self.procs[index % len(self.procs)]
            index += 1
            if proc.running:
                proc.process.send_signal(signal.SIGSTOP)
                try:
                    self.pauses += 1
                    self.stop.wait(0.6)
                finally:
                    proc.process.send_signal(signal.SIGCONT)
            self.stop.wait(0.3)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join()


def counter_value(cluster: RingCluster, key: str) -> int:
    reply = cluster.ring_servers["rs2"].request("GET", f"/v1/kv/seats/{key}")
    if reply.status == 404:
        return 0
    assert reply.status == 200, reply
    return reply.json()["value"]


def test_counters_survive_a_join_and_a_leave_exactly(ringstore_bin, cluster5):
    """While n6 joins and then n2 leaves, every acknowledged increment is in its
    counter and no counter holds more than the acknowledged plus the unknown ones."""
    rs1 = cluster5.ring_servers["rs1"]
    assert rs1.request("PUT", "/v1/tables/seats", body=b'{"consistency": "linearizable", "n": 3}').status == 201
    time.sleep(0.5)
    n6 = cluster5.add_node("n6").start()
    deadline = time.monotonic() + 10
    while "n6" not in {m["id"] for m in cluster5.admin("GET", "/v1/admin/status").json()["members"]}:
        assert time.monotonic() < deadline, "n6 never registered"
        time.sleep(0.1)

    with Incrementers(cluster5) as load:
        with Pauser(cluster5, ["n1", "n3", "n4", "n5"]) as pauser:
            time.sleep(2)
            admin_cli(ringstore_bin, cluster5, "join", "n6")
            admin_cli(ringstore_bin, cluster5, "commit")
            joined_in = wait_for_transition(cluster5)
            time.sleep(2)
            admin_cli(ringstore_bin, cluster5, "leave", "n2")
            admin_cli(ringstore_bin, cluster5, "commit")
            left_in = wait_for_transition(cluster5)
            time.sleep(2)
        time.sleep(1)

    assert not load.errors, load.errors[:5]
    assert sum(load.acknowledged.values()) > 200, load.acknowledged
    wrong = {}
    for key in KEYS:
        value = counter_value(cluster5, key)
        if not load.acknowledged[key] <= value <= load.acknowledged[key] + load.unknown[key]:
            wrong[key] = (value, load.acknowledged[key], load.unknown[key])
    assert not wrong, f"counters off (value, acknowledged, unknown): {wrong}"
    assert n6.request("GET", "/healthz").json()["keys"] > 0
    print(f"join {joined_in:.1f} s, leave {left_in:.1f} s; {sum(load.acknowledged.values())} increments acknowledged, "
          f"{sum(load.unknown.values())} unknown, refused as not applied: {dict(load.not_applied)}; {pauser.pauses} pauses")


def increment(cluster: RingCluster, key: str) -> int:
    """Adds 1 through a ring server, retrying answers that applied nothing; returns the new value."""
    for _ in range(50):
        reply = cluster.ring_servers["rs1"].request("POST", f"/v1/kv/seats/{key}/add?delta=1")
        if reply.status == 200:
            return reply.json()["value"]
        assert reply.status == 503 and reply.json()["outcome"] == "not_applied", reply
        time.sleep(0.1)
    raise AssertionError(f"{key} could not be incremented")


def wait_reachability(cluster: RingCluster, name: str, reachable: bool, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        members = {m["id"]: m["reachable"] for m in cluster.view("rs1")["members"]}
        if members.get(name) == reachable:
            return
        assert time.monotonic() < deadline, f"{name} never became {'reachable' if reachable else 'unreachable'}"
        time.sleep(0.1)


def test_a_new_replica_learns_what_was_chosen_from_the_transfer(ringstore_bin, cluster5):
    """n1 misses three increments of every counter (it is down), then n6 joins. For the
    counters whose new replicas include both n6 and n1, the other replica is then
    paused: n6 and the lagging n1 are a majority on their own, and they still answer
    the latest value, because n6 merged the acceptor states of a majority of the old
    replicas when the partition streamed to it."""
    rs1 = cluster5.ring_servers["rs1"]
    assert rs1.request("PUT", "/v1/tables/seats", body=b'{"consistency": "linearizable", "n": 3}').status == 201
    time.sleep(0.5)
    keys = [f"lag{index}" for index in range(64)]
    for key in keys:
        assert increment(cluster5, key) == 1
    n1 = cluster5.nodes["n1"]
    paused: list = []
    try:
        # Killed, not paused: a paused node would still find the requests it missed
        # waiting in its sockets when it resumes.
        n1.kill()
        wait_reachability(cluster5, "n1", False)
        for key in keys:
            for expected in (2, 3, 4):
                assert increment(cluster5, key) == expected
        n1.start()
        wait_reachability(cluster5, "n1", True)

        n6 = cluster5.add_node("n6").start()
        deadline = time.monotonic() + 10
        while "n6" not in {m["id"] for m in cluster5.admin("GET", "/v1/admin/status").json()["members"]}:
            assert time.monotonic() < deadline, "n6 never registered"
            time.sleep(0.1)
        admin_cli(ringstore_bin, cluster5, "join", "n6")
        admin_cli(ringstore_bin, cluster5, "commit")
        wait_for_transition(cluster5)
        epoch = rs1.request("GET", "/v1/cluster/ring").json()["epoch"]
        for proc in cluster5.nodes.values():
            deadline = time.monotonic() + 10
            while proc.request("GET", "/v1/cluster").json()["ring_epoch"] < epoch:
                assert time.monotonic() < deadline, f"{proc.name} never adopted the new ring"
                time.sleep(0.1)

        shared = [key for key in keys
                  if {"n1", "n6"} <= set(rs1.request("GET", f"/v1/cluster/locate/seats/{key}").json()["preference_list"][:3])]
        assert len(shared) >= 3, f"only {len(shared)} counters have both n1 and n6 as replicas"
        for name in ("n2", "n3", "n4", "n5"):
            cluster5.nodes[name].process.send_signal(signal.SIGSTOP)
            paused.append(cluster5.nodes[name])
        for key in shared:
            reply = n6.request("GET", f"/v1/kv/seats/{key}")
            assert reply.status == 200 and reply.json()["value"] == 4, (key, reply)
    finally:
        for proc in paused:
            proc.process.send_signal(signal.SIGCONT)
