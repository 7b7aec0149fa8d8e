"""Two hundred clients race for one linearizable key on a cluster of five nodes
(two ring servers, a table with n=3) while replicas of that key crash, restart and
pause: a capped set admits exactly its cap, a bounded counter never goes below its
floor, and the recorded history of the counter is linearizable (tests/lincheck.py)."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import quote

import pytest

from tests.lincheck import INT64_MAX, INT64_MIN, Counter, Op, assert_linearizable
from tests.ring_harness import Proc, RingCluster

TABLE = "race"
CLIENTS = 200
SET_CAP = 50
SEATS = 50
CLIENT_DEADLINE_SECONDS = 60.0


@pytest.fixture(scope="module")
def cluster(ringstore_bin, tmp_path_factory):
    cluster = RingCluster(ringstore_bin, tmp_path_factory.mktemp("race"), node_count=5)
    try:
        cluster.start()
        reply = cluster.ring_servers["rs1"].request("PUT", f"/v1/tables/{TABLE}", body=json.dumps({"consistency": "linearizable", "n": 3}))
        assert reply.status == 201, reply
        for proc in [*cluster.ring_servers.values(), *cluster.nodes.values()]:
            deadline = time.monotonic() + 10
            while proc.request("GET", f"/v1/tables/{TABLE}").status != 200:
                assert time.monotonic() < deadline, f"{proc.name} never learned table {TABLE}"
                time.sleep(0.05)
        yield cluster
    finally:
        cluster.stop()


def replicas(cluster: RingCluster, key: str) -> list[Proc]:
    """The key's three home replicas, first the one ring servers send its requests to."""
    located = cluster.ring_servers["rs1"].request("GET", f"/v1/cluster/locate/{TABLE}/{quote(key, safe='')}")
    assert located.status == 200, located
    return [cluster.nodes[name] for name in located.json()["preference_list"][:3]]


def key_path(key: str, operation: str = "", query: str = "") -> str:
    return f"/v1/kv/{TABLE}/{quote(key, safe='')}" + (f"/{operation}" if operation else "") + (f"?{query}" if query else "")


def body_of(reply) -> dict:
    try:
        return reply.json()
    except ValueError:
        return {}


class Gate:
    """Lets client threads go in batches, and counts those that have finished."""

    def __init__(self):
        self.tickets = threading.Semaphore(0)
        self.finished = 0
        self.condition = threading.Condition()

    def release(self, count: int, interval: float = 0.0) -> None:
        """Lets `count` more clients go, one every `interval` seconds."""
        for _ in range(count):
            self.tickets.release()
            if interval:
                time.sleep(interval)

    def enter(self) -> None:
        self.tickets.acquire()

    def done(self) -> None:
        with self.condition:
            self.finished += 1
            self.condition.notify_all()

    def wait_finished(self, count: int, timeout: float = 30.0) -> None:
        with self.condition:
            assert self.condition.wait_for(lambda: self.finished >= count, timeout), (
                f"only {self.finished} of {count} clients finished within {timeout} s")


def run_clients(target, count: int) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, args=(index,), daemon=True) for index in range(count)]
    for thread in threads:
        thread.start()
    return threads


def join_all(threads: list[threading.Thread]) -> None:
    deadline = time.monotonic() + CLIENT_DEADLINE_SECONDS
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    stuck = sum(thread.is_alive() for thread in threads)
    assert not stuck, f"{stuck} clients had not finished after {CLIENT_DEADLINE_SECONDS} s"


def pause(proc: Proc) -> None:
    proc.process.send_signal(signal.SIGSTOP)


def resume(proc: Proc) -> None:
    if proc.process is not None and proc.process.poll() is None:
        proc.process.send_signal(signal.SIGCONT)


# ---------------------------------------------------------------------------
# A capped set


def test_a_capped_set_admits_exactly_its_cap_while_a_replica_crashes(cluster):
    """200 clients set-add their own id to one set capped at 50 while the replica that
    coordinates it is SIGKILLed and later restarted; clients retry 503s and connection
    errors (set-add is idempotent) until a definite answer. Exactly 50 clients hear 200,
    they are exactly the members, and the other 150 hear 409 set_full."""
    key = "tickets"
    victim = replicas(cluster, key)[0]
    servers = list(cluster.ring_servers.values())
    gate = Gate()
    answers: dict[int, tuple[str, dict]] = {}
    retries = {"503": 0, "connection": 0}
    lock = threading.Lock()

    def client(index: int) -> None:
        gate.enter()
        member = f"client-{index:03d}"
        server = index % 2
        rng = random.Random(index)
        deadline = time.monotonic() + CLIENT_DEADLINE_SECONDS - 5
        try:
            while time.monotonic() < deadline:
                try:
                    reply = servers[server].request("POST", key_path(key, "set-add", f"member={member}&cap={SET_CAP}"), timeout=10)
                except OSError:
                    with lock:
                        retries["connection"] += 1
                    server = 1 - server
                    time.sleep(rng.uniform(0.02, 0.1))
                    continue
                if reply.status == 503:
                    with lock:
                        retries["503"] += 1
                    time.sleep(rng.uniform(0.02, 0.1))
                    continue
                answers[index] = ("ok" if reply.status == 200 else str(reply.status), body_of(reply))
                return
            answers[index] = ("gave up", {})
        finally:
            gate.done()

    threads = run_clients(client, CLIENTS)
    try:
        gate.release(30)
        gate.wait_finished(15)
        victim.kill()
        gate.release(30)
        gate.wait_finished(45)
        victim.start()
        gate.release(CLIENTS - 60)
    finally:
        gate.release(CLIENTS)
        if not victim.running:
            victim.start()
    join_all(threads)

    outcomes = {index: answer[0] for index, answer in answers.items()}
    assert len(outcomes) == CLIENTS
    unexpected = {index: answers[index] for index, outcome in outcomes.items() if outcome not in ("ok", "409")}
    assert not unexpected, f"clients without a definite answer: {list(unexpected.items())[:5]}"
    admitted = {f"client-{index:03d}" for index, outcome in outcomes.items() if outcome == "ok"}
    for index, (outcome, body) in answers.items():
        if outcome == "ok":
            assert f"client-{index:03d}" in body["members"] and body["count"] == len(body["members"]) <= SET_CAP, body
        else:
            assert body.get("error") == "set_full" and (body["count"], body["cap"]) == (SET_CAP, SET_CAP), body
    assert len(admitted) == SET_CAP, f"{len(admitted)} clients were told they are in a set capped at {SET_CAP}"

    cluster.wait_until_formed()
    for server in servers:
        final = server.request("GET", key_path(key))
        assert final.status == 200 and final.header("X-Ringstore-Kind") == "set", final
        assert final.json()["count"] == SET_CAP
        assert set(final.json()["members"]) == admitted, (
            f"members not told 200: {sorted(set(final.json()['members']) - admitted)[:5]}; "
            f"told 200 but missing: {sorted(admitted - set(final.json()['members']))[:5]}")
    print(f"set: {len(admitted)} admitted, {CLIENTS - len(admitted)} refused; retries {retries}")


# ---------------------------------------------------------------------------
# A bounded counter


DOWN = ("add", -1, 0, INT64_MAX)
# Clients start one every PACE seconds while replicas fail, four times as fast after.
PACE = 0.04
PAUSE_SECONDS = 2.0


@dataclass
class History:
    """What the clients saw, as lincheck operations, and what they could not classify."""

    ops: list[Op] = field(default_factory=list)
    refusals: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    not_applied: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)

    def count(self, kind: str) -> int:
        calls = [op for op in self.ops if op.call == DOWN]
        if kind == "unknown":
            return sum(op.completed is None for op in calls)
        return sum(op.completed is not None and op.result[0] == kind for op in calls)


def add_once(server, key: str, query: str, history: History, client, retry_not_applied: bool = True) -> Op | None:
    """One add as a client sees it: retried while the answer says nothing was applied,
    recorded as unknown on a connection error or any other 503, and as ok or refused otherwise."""
    delta, low, high = 0, INT64_MIN, INT64_MAX
    for part in query.split("&"):
        name, value = part.split("=")
        if name == "delta":
            delta = int(value)
        elif name == "min":
            low = int(value)
        elif name == "max":
            high = int(value)
    call = ("add", delta, low, high)
    deadline = time.monotonic() + CLIENT_DEADLINE_SECONDS - 5
    while True:
        invoked = time.monotonic()
        try:
            reply = server.request("POST", key_path(key, "add", query), timeout=20)
        except OSError:
            op = Op(key, call, invoked, None, client=client)
            history.record(op)
            return op
        completed = time.monotonic()
        body = body_of(reply)
        if reply.status == 503 and body.get("outcome") == "not_applied" and retry_not_applied and completed < deadline:
            with history.lock:
                history.not_applied += 1
            time.sleep(random.uniform(0.02, 0.1))
            continue
        if reply.status == 200:
            op = Op(key, call, invoked, completed, ("ok", body["value"]), client=client)
        elif reply.status == 409:
            with history.lock:
                history.refusals.append(body)
            op = Op(key, call, invoked, completed, ("refused", body.get("value")), client=client)
        elif reply.status == 503:
            op = Op(key, call, invoked, None, client=client)
        else:
            with history.lock:
                history.errors.append(f"{client}: {reply}")
            return None
        history.record(op)
        return op


def read_counter(server, key: str, history: History, client) -> None:
    invoked = time.monotonic()
    try:
        reply = server.request("GET", key_path(key), timeout=20)
    except OSError:
        return
    completed = time.monotonic()
    if reply.status == 200:
        history.record(Op(key, ("read",), invoked, completed, reply.json()["value"], client=client))
    elif reply.status != 503:
        with history.lock:
            history.errors.append(f"{client}: {reply}")


def test_a_bounded_counter_never_goes_below_its_floor_and_is_linearizable(cluster):
    """A counter set to 50 is decremented once by each of 200 clients with min=0 while one
    replica is SIGKILLed and restarted, then the coordinating replica is SIGSTOPped and
    SIGCONTed (a majority of the three stays up throughout). Clients retry only answers that
    applied nothing and record the rest as unknown. No read or answer is below 0, at most 50
    decrements succeed, every refusal is counter_out_of_bounds at 0, the final value lies
    between 50 - ok - unknown and 50 - ok, and the whole history (with concurrent readers)
    is linearizable."""
    key = "seats"
    coordinator, acceptor, _ = replicas(cluster, key)
    servers = list(cluster.ring_servers.values())
    history = History()
    first = add_once(servers[0], key, f"delta={SEATS}", history, "init")
    assert first is not None and first.result == ("ok", SEATS), history.errors
    gate = Gate()
    stop_reading = threading.Event()

    def client(index: int) -> None:
        gate.enter()
        try:
            add_once(servers[index % 2], key, "delta=-1&min=0", history, f"client-{index}")
        finally:
            gate.done()

    def reader(index: int) -> None:
        while not stop_reading.is_set():
            read_counter(servers[index % 2], key, history, f"reader-{index}")
            stop_reading.wait(0.02)

    readers = run_clients(reader, 3)
    threads = run_clients(client, CLIENTS)
    paused = False
    try:
        gate.release(12, PACE)
        gate.wait_finished(8)
        acceptor.kill()
        gate.release(12, PACE)
        gate.wait_finished(20)
        acceptor.start()
        cluster.wait_until_formed()
        gate.release(12, PACE)
        gate.wait_finished(32)
        pause(coordinator)
        paused = True
        gate.release(12, PACE)
        time.sleep(PAUSE_SECONDS)
        resume(coordinator)
        paused = False
        gate.release(CLIENTS - 48, PACE / 4)
        join_all(threads)
    finally:
        if paused:
            resume(coordinator)
        gate.release(CLIENTS)
        stop_reading.set()
        if not acceptor.running:
            acceptor.start()
    for thread in readers:
        thread.join(30)

    cluster.wait_until_formed()
    final = None
    for _ in range(50):
        before = time.monotonic()
        reply = servers[0].request("GET", key_path(key))
        if reply.status == 200:
            final = reply.json()["value"]
            history.record(Op(key, ("read",), before, time.monotonic(), final, client="final"))
            break
        assert reply.status == 503, reply
        time.sleep(0.1)
    assert final is not None, "the final value could not be read"

    assert not history.errors, history.errors[:5]
    ok, refused, unknown = history.count("ok"), history.count("refused"), history.count("unknown")
    assert ok + refused + unknown == CLIENTS, (ok, refused, unknown)
    reads = [op.result for op in history.ops if op.call == ("read",)]
    assert min(reads) >= 0, f"the counter read {min(reads)}"
    assert all(op.result[1] >= 0 for op in history.ops if op.call == DOWN and op.completed is not None and op.result[0] == "ok")
    assert ok <= SEATS, f"{ok} decrements of {SEATS} seats succeeded"
    for body in history.refusals:
        assert body.get("error") == "counter_out_of_bounds", body
        assert (body["value"], body["delta"], body["min"], body["max"]) == (0, -1, 0, INT64_MAX), body
    assert SEATS - ok - unknown <= final <= SEATS - ok, f"final {final}, {ok} ok, {unknown} unknown"

    started = time.monotonic()
    verdicts = assert_linearizable(history.ops, Counter)
    print(f"counter: {ok} ok, {refused} refused, {unknown} unknown, {history.not_applied} retried as not applied, "
          f"{len(reads)} reads, final {final}; checked in {time.monotonic() - started:.2f} s "
          f"({verdicts[key].visited} configurations)")
