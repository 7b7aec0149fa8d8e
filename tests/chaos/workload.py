"""Clients of the chaos suite, run concurrently through both ring servers while the
nemesis injects faults. Each records what it saw: which writes were acknowledged,
which failed for certain and which may or may not have happened, what reads
returned, and every HTTP attempt with its time (for availability per fault).

- `UniqueWrites`: every key written once (W=2 on the default table), values that
  carry their own checksum; reads of earlier acknowledged keys find stale reads.
- `SharedWrites`: read-modify-write of a few shared keys with contexts; siblings.
- `Deletes`: acknowledged keys deleted with the context of a read.
- `Counters`: counter additions on a linearizable table and concurrent reads, as a
  history for tests/lincheck.py.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable

from tests.chaos.cluster import ChaosCluster, Host, NotSent, kv
from tests.harness import Reply
from tests.lincheck import INT64_MAX, INT64_MIN, Op

CLIENT_TIMEOUT_SECONDS = 5.0
COUNTER_TABLE = "cas"
ADD_ONE = ("add", 1, INT64_MIN, INT64_MAX)


def checked_value(key: str, salt: str = "") -> bytes:
    """A value that names its key and carries a checksum of itself."""
    payload = f"{key}/{salt}/" + hashlib.sha256(f"{key}/{salt}".encode()).hexdigest()[:40]
    return f"{payload}#{hashlib.sha256(payload.encode()).hexdigest()[:16]}".encode()


def value_is_intact(value: bytes, key: str | None = None) -> bool:
    """Whether a value written by `checked_value` is whole (and names `key`)."""
    try:
        payload, digest = value.decode().rsplit("#", 1)
    except (UnicodeDecodeError, ValueError):
        return False
    if hashlib.sha256(payload.encode()).hexdigest()[:16] != digest:
        return False
    return key is None or payload.startswith(f"{key}/")


def live_values(reply: Reply) -> list[bytes] | None:
    """The live values of a read: one for 200, the live siblings for 300, none for 404;
    None for anything else (the read failed)."""
    if reply.status == 200:
        return [reply.body]
    if reply.status == 300:
        return [base64.b64decode(s["value_base64"]) for s in reply.json()["siblings"] if not s.get("deleted")]
    if reply.status == 404:
        return []
    return None


def json_body(reply: Reply) -> dict:
    try:
        body = json.loads(reply.body)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


# ---------------------------------------------------------------------------
# Clients and what they record


class OpLog:
    """Every HTTP attempt of every workload: when it started and whether it was served."""

    def __init__(self):
        self.lock = threading.Lock()
        self.entries: list[tuple[str, float, float, bool]] = []

    def add(self, workload: str, invoked: float, ok: bool) -> None:
        with self.lock:
            self.entries.append((workload, invoked, time.monotonic(), ok))

    def between(self, start: float, end: float) -> list[tuple[str, float, float, bool]]:
        with self.lock:
            return [entry for entry in self.entries if start <= entry[1] <= end]


@dataclass
class Outcome:
    """What one request came to: a reply, or `indeterminate` (sent, no answer) or
    `unsent` (neither ring server took the connection: certainly not applied)."""

    reply: Reply | None
    failure: str | None
    invoked: float
    completed: float

    @property
    def status(self) -> int | None:
        return self.reply.status if self.reply is not None else None


class Client:
    """Sends to one ring server and moves to the other when a connection fails."""

    def __init__(self, cluster: ChaosCluster, prefer: int):
        self.servers: list[Host] = list(cluster.ring_servers.values())
        self.current = prefer % len(self.servers)

    def send(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
             timeout: float = CLIENT_TIMEOUT_SECONDS) -> Outcome:
        invoked = time.monotonic()
        for _ in range(len(self.servers)):
            server = self.servers[self.current]
            try:
                reply = server.request(method, path, body=body, headers=headers, timeout=timeout)
                return Outcome(reply, None, invoked, time.monotonic())
            except NotSent:
                self.current = (self.current + 1) % len(self.servers)
            except OSError as error:
                # Sent, and then the connection failed or timed out: the request may have been applied.
                self.current = (self.current + 1) % len(self.servers)
                return Outcome(None, f"indeterminate: {error!r}"[:200], invoked, time.monotonic())
        return Outcome(None, "unsent", invoked, time.monotonic())


class Workload:
    """Threads that loop until `stop` is set; subclasses define `loop(index, client, rng)`."""

    name = "workload"

    def __init__(self, cluster: ChaosCluster, oplog: OpLog, seed: int, threads: int):
        self.cluster = cluster
        self.oplog = oplog
        self.seed = seed
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(index,), name=f"{self.name}-{index}", daemon=True)
                        for index in range(threads)]

    def _run(self, index: int) -> None:
        client = Client(self.cluster, index)
        rng = random.Random(f"{self.seed}/{self.name}/{index}")
        while not self.stop.is_set():
            try:
                self.loop(index, client, rng)
            except Exception as error:  # noqa: BLE001 - a client bug must show in the report, not kill the thread silently
                with self.lock:
                    self.errors.append(f"{self.name}-{index}: {error!r}")
                self.stop.wait(0.2)

    def loop(self, index: int, client: Client, rng: random.Random) -> None:
        raise NotImplementedError

    def record(self, outcome: Outcome, ok: bool) -> None:
        self.oplog.add(self.name, outcome.invoked, ok)

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self, timeout: float = 2 * CLIENT_TIMEOUT_SECONDS + 5) -> None:
        self.stop.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [thread.name for thread in self.threads if thread.is_alive()]
        if stuck:
            with self.lock:
                self.errors.append(f"clients still running {timeout} s after being stopped: {stuck}")


# ---------------------------------------------------------------------------
# a. Unique keys


class UniqueWrites(Workload):
    """Writes each key once with W=2, and reads back keys acknowledged earlier."""

    name = "unique"

    def __init__(self, cluster, oplog, seed, threads: int = 3, pause: float = 0.05, read_share: float = 0.5):
        super().__init__(cluster, oplog, seed, threads)
        self.pause = pause
        self.read_share = read_share
        self.acknowledged: dict[str, tuple[bytes, float]] = {}
        self.ack_order: list[str] = []
        self.indeterminate: dict[str, bytes] = {}
        self.failed: dict[str, str] = {}
        self.claimed: set[str] = set()  # taken by the deleter: no longer expected to hold their value
        self.reads = 0
        self.stale_reads: list[tuple[str, float]] = []
        self.wrong_reads: list[str] = []
        self.sequence = defaultdict(int)

    def record_write(self, key: str, value: bytes, outcome: Outcome) -> None:
        """Files a write of `key` by what its outcome says about it."""
        with self.lock:
            if outcome.status == 204:
                self.acknowledged[key] = (value, outcome.completed)
                self.ack_order.append(key)
            elif outcome.failure == "unsent" or (outcome.status is not None and 400 <= outcome.status < 500):
                self.failed[key] = outcome.failure or str(outcome.status)
            else:
                self.indeterminate[key] = value

    def loop(self, index, client, rng):
        number = self.sequence[index]
        self.sequence[index] += 1
        key = f"u{index}-{number:06d}"
        value = checked_value(key)
        outcome = client.send("PUT", kv("default", key, "w=2"), body=value)
        self.record(outcome, outcome.status == 204)
        self.record_write(key, value, outcome)
        if rng.random() < self.read_share:
            self.read_back(client, rng)
        self.stop.wait(self.pause)

    def read_back(self, client: Client, rng: random.Random) -> None:
        with self.lock:
            if not self.ack_order:
                return
            key = self.ack_order[rng.randrange(len(self.ack_order))]
            if key in self.claimed:
                return
            value, _ = self.acknowledged[key]
        outcome = client.send("GET", kv("default", key))
        values = live_values(outcome.reply) if outcome.reply is not None else None
        self.record(outcome, values is not None)
        if values is None:
            return
        with self.lock:
            if key in self.claimed:
                return
            self.reads += 1
            if not values:
                self.stale_reads.append((key, outcome.invoked))
            elif any(found != value for found in values):
                self.wrong_reads.append(f"{key}: read {values!r}, wrote {value!r}")

    def claim(self, rng: random.Random, older_than: float) -> tuple[str, bytes] | None:
        """Hands an acknowledged key to the deleter."""
        with self.lock:
            for _ in range(20):
                if not self.ack_order:
                    return None
                key = self.ack_order[rng.randrange(len(self.ack_order))]
                value, acknowledged_at = self.acknowledged[key]
                if key not in self.claimed and acknowledged_at < older_than:
                    self.claimed.add(key)
                    return key, value
        return None

    def unclaim(self, key: str) -> None:
        with self.lock:
            self.claimed.discard(key)

    def expected(self) -> dict[str, bytes]:
        """Acknowledged keys that must still hold their value."""
        with self.lock:
            return {key: value for key, (value, _) in self.acknowledged.items() if key not in self.claimed}


# ---------------------------------------------------------------------------
# b. Shared keys, with contexts


class SharedWrites(Workload):
    """Read, then write with the read's context, on a few keys shared by all threads."""

    name = "shared"

    def __init__(self, cluster, oplog, seed, threads: int = 3, keys: int = 4, pause: float = 0.05):
        super().__init__(cluster, oplog, seed, threads)
        self.keys = [f"shared-{index}" for index in range(keys)]
        self.pause = pause
        self.max_siblings = {key: 0 for key in self.keys}
        self.writes = {"acknowledged": 0, "other": 0}
        self.garbled: list[str] = []
        self.counter = defaultdict(int)

    def observe(self, key: str, reply: Reply) -> None:
        values = live_values(reply)
        if not values:
            return
        with self.lock:
            self.max_siblings[key] = max(self.max_siblings[key], len(values) if reply.status == 300 else 1)
            for value in values:
                if not value_is_intact(value, key):
                    self.garbled.append(f"{key}: {value[:80]!r}")

    def loop(self, index, client, rng):
        key = rng.choice(self.keys)
        read = client.send("GET", kv("default", key))
        served = read.reply is not None and live_values(read.reply) is not None
        self.record(read, served)
        if not served:
            self.stop.wait(self.pause)
            return
        self.observe(key, read.reply)
        context = read.reply.header("X-Ringstore-Context")
        self.counter[index] += 1
        value = checked_value(key, f"c{index}-{self.counter[index]}")
        headers = {"X-Ringstore-Context": context} if context else {}
        write = client.send("PUT", kv("default", key), body=value, headers=headers)
        self.record(write, write.status == 204)
        with self.lock:
            self.writes["acknowledged" if write.status == 204 else "other"] += 1
        self.stop.wait(self.pause)


# ---------------------------------------------------------------------------
# c. Deletes


class Deletes(Workload):
    """Deletes acknowledged unique keys with the context of a read; re-reads deleted ones."""

    name = "delete"

    def __init__(self, cluster, oplog, seed, unique: UniqueWrites, threads: int = 1, pause: float = 0.25):
        super().__init__(cluster, oplog, seed, threads)
        self.unique = unique
        self.pause = pause
        self.deleted: dict[str, float] = {}
        self.indeterminate: set[str] = set()
        self.stale_reads: list[tuple[str, float]] = []

    def loop(self, index, client, rng):
        if self.deleted and rng.random() < 0.3:
            self.reread(client, rng)
        claimed = self.unique.claim(rng, older_than=time.monotonic() - 0.5)
        if claimed is None:
            self.stop.wait(self.pause)
            return
        key, value = claimed
        read = client.send("GET", kv("default", key))
        values = live_values(read.reply) if read.reply is not None else None
        self.record(read, values is not None)
        if values == []:
            with self.unique.lock:
                self.unique.stale_reads.append((key, read.invoked))
        if not values or read.reply.header("X-Ringstore-Context") is None:
            self.unique.unclaim(key)  # not read (or read stale): keep it as an ordinary key
            self.stop.wait(self.pause)
            return
        delete = client.send("DELETE", kv("default", key), headers={"X-Ringstore-Context": read.reply.header("X-Ringstore-Context")})
        self.record(delete, delete.status == 204)
        with self.lock:
            if delete.status == 204:
                self.deleted[key] = delete.completed
            elif delete.failure == "unsent" or (delete.status is not None and 400 <= delete.status < 500):
                self.unique.unclaim(key)
            else:
                self.indeterminate.add(key)
        self.stop.wait(self.pause)

    def reread(self, client: Client, rng: random.Random) -> None:
        with self.lock:
            key = rng.choice(list(self.deleted))
        outcome = client.send("GET", kv("default", key))
        values = live_values(outcome.reply) if outcome.reply is not None else None
        self.record(outcome, values is not None)
        if values:
            with self.lock:
                self.stale_reads.append((key, outcome.invoked))


# ---------------------------------------------------------------------------
# d. Counters on a linearizable table


class Counters(Workload):
    """Adds 1 to counters of a linearizable table (threads 0…adders-1) and reads them
    (the rest), recording a lincheck history. A 503 that says `not_applied` is retried;
    a connection failure after sending, a timeout or any other 5xx is an unknown outcome."""

    name = "cas"

    def __init__(self, cluster, oplog, seed, adders: int = 3, readers: int = 2, keys: int = 6, pause: float = 0.05,
                 retry_seconds: float = 10.0):
        super().__init__(cluster, oplog, seed, adders + readers)
        self.adders = adders
        self.keys = [f"counter-{index}" for index in range(keys)]
        self.pause = pause
        self.retry_seconds = retry_seconds
        self.history: list[Op] = []
        self.not_applied = 0
        self.statuses: dict[str, int] = defaultdict(int)

    def add(self, op: Op) -> None:
        with self.lock:
            self.history.append(op)

    def loop(self, index, client, rng):
        key = rng.choice(self.keys)
        if index < self.adders:
            self.add_one(client, key, f"adder-{index}")
        else:
            self.read(client, key, f"reader-{index}")
        self.stop.wait(self.pause)

    def add_one(self, client: Client, key: str, who: str) -> None:
        path = kv(COUNTER_TABLE, key) + "/add?delta=1"
        give_up = time.monotonic() + self.retry_seconds
        while True:
            outcome = client.send("POST", path)
            self.record(outcome, outcome.status == 200)
            status = str(outcome.status) if outcome.reply is not None else outcome.failure.split(":")[0]
            with self.lock:
                self.statuses[status] += 1
            if outcome.failure == "unsent":
                if self.stop.wait(0.1) or time.monotonic() > give_up:
                    return  # never sent: nothing happened
                continue
            if outcome.reply is None:
                return self.add(Op(key, ADD_ONE, outcome.invoked, None, client=who))
            body = json_body(outcome.reply)
            if outcome.status == 200:
                return self.add(Op(key, ADD_ONE, outcome.invoked, outcome.completed, ("ok", body["value"]), client=who))
            if outcome.status == 503 and body.get("outcome") == "not_applied":
                with self.lock:
                    self.not_applied += 1
                if time.monotonic() > give_up or self.stop.wait(0.05):
                    return  # every attempt said it applied nothing
                continue
            if 400 <= outcome.status < 500:
                with self.lock:
                    self.errors.append(f"{who} add {key}: {outcome.reply}")
                return
            # Any other answer (503 outcome unknown, or an error without an outcome) may have been applied.
            return self.add(Op(key, ADD_ONE, outcome.invoked, None, client=who))

    def read(self, client: Client, key: str, who: str) -> None:
        outcome = client.send("GET", kv(COUNTER_TABLE, key))
        self.record(outcome, outcome.status in (200, 404))
        if outcome.status == 200:
            self.add(Op(key, ("read",), outcome.invoked, outcome.completed, json_body(outcome.reply)["value"], client=who))
        elif outcome.status == 404:
            self.add(Op(key, ("read",), outcome.invoked, outcome.completed, 0, client=who))

    def final_reads(self, timeout: float = 20.0) -> dict[str, int | None]:
        """Reads every counter through both ring servers once the faults are over."""
        finals: dict[str, int | None] = {}
        for key in self.keys:
            finals[key] = None
            for prefer in range(2):
                client = Client(self.cluster, prefer)
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    outcome = client.send("GET", kv(COUNTER_TABLE, key))
                    if outcome.status in (200, 404):
                        value = json_body(outcome.reply)["value"] if outcome.status == 200 else 0
                        self.add(Op(key, ("read",), outcome.invoked, outcome.completed, value, client=f"final-{prefer}"))
                        finals[key] = value
                        break
                    time.sleep(0.2)
        return finals


# ---------------------------------------------------------------------------
# Checking many keys fast


class KeepAlive:
    """One persistent connection per server for one checking thread."""

    def __init__(self):
        self.connections: dict[tuple[str, int], http.client.HTTPConnection] = {}

    def get(self, server: Host, path: str, timeout: float = CLIENT_TIMEOUT_SECONDS) -> Reply | None:
        address = (server.host, server.port)
        for _ in range(2):
            connection = self.connections.get(address)
            if connection is None:
                connection = self.connections[address] = http.client.HTTPConnection(*address, timeout=timeout)
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                return Reply(response.status, response.getheaders(), response.read())
            except (OSError, http.client.HTTPException):
                connection.close()
                del self.connections[address]
        return None

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()
        self.connections.clear()


def read_everywhere(cluster: ChaosCluster, keys: Iterable[str], judge: Callable[[str, Reply | None], str],
                    query: str = "r=3", threads: int = 12) -> dict[str, list[str]]:
    """Reads every key from each ring server (in parallel) and judges each reply;
    returns {key: [verdict per ring server]}."""
    servers = list(cluster.ring_servers.values())
    keys = list(keys)
    verdicts: dict[str, list[str]] = {}
    lock = threading.Lock()
    position = iter(range(len(keys)))

    def worker():
        pool = KeepAlive()
        try:
            while True:
                with lock:
                    index = next(position, None)
                if index is None:
                    return
                key = keys[index]
                found = [judge(key, pool.get(server, kv("default", key, query))) for server in servers]
                with lock:
                    verdicts[key] = found
        finally:
            pool.close()

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(min(threads, max(1, len(keys))))]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return verdicts


def judge_value(expected: dict[str, bytes]) -> Callable[[str, Reply | None], str]:
    """`ok` when a read returned exactly the expected value (alone or as every live
    sibling), `missing` for 404, `wrong` for another value, `error` when it failed."""

    def judge(key: str, reply: Reply | None) -> str:
        if reply is None:
            return "error"
        values = live_values(reply)
        if values is None:
            return "error"
        if not values:
            return "missing"
        return "ok" if all(value == expected[key] for value in values) else "wrong"

    return judge


def judge_deleted(key: str, reply: Reply | None) -> str:
    """`gone` for 404 (or only tombstones), `back` when a live value is served."""
    if reply is None:
        return "error"
    values = live_values(reply)
    if values is None:
        return "error"
    return "back" if values else "gone"
