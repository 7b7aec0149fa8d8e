"""Crash consistency of one node: SIGKILL in the middle of writes, over and over,
never loses an acknowledged write under --durability always; and a node whose files
were damaged while it was down (a flipped bit in a record, a truncated segment, a
deleted hint file) never serves a corrupt value, says what it found in its log, and
gets every key back from its replicas through `ringstore admin repair`."""

from __future__ import annotations

import http.client
import random
import re
import threading
import time
from pathlib import Path

from tests.chaos.cluster import ChaosCluster, kv, start_despite_rebuilds
from tests.chaos.workload import checked_value, live_values, value_is_intact
from tests.harness import Node, kv_path

WRITERS = 4


class CycleWriter(threading.Thread):
    """PUTs unique keys on one keep-alive connection until the node dies under it."""

    def __init__(self, port: int, prefix: str):
        super().__init__(daemon=True)
        self.port, self.prefix = port, prefix
        self.attempted: list[str] = []
        self.acknowledged: list[str] = []
        self.unexpected: list[str] = []

    def run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            for sequence in range(100_000):
                key = f"{self.prefix}-{sequence:05d}"
                self.attempted.append(key)
                connection.request("PUT", kv_path("default", key), body=checked_value(key))
                reply = connection.getresponse()
                reply.read()
                if reply.status != 204:
                    self.unexpected.append(f"{key}: HTTP {reply.status}")
                    return
                self.acknowledged.append(key)
        except (OSError, http.client.HTTPException):
            return  # the node was killed
        finally:
            connection.close()


def read_value(connection: http.client.HTTPConnection, key: str) -> tuple[int, bytes]:
    connection.request("GET", kv_path("default", key))
    reply = connection.getresponse()
    return reply.status, reply.read()


def health_keys(node: Node) -> int:
    return node.request("GET", "/healthz").json()["keys"]


def test_acknowledged_writes_survive_repeated_sigkill(ringstore_bin, run_folder, chaos_settings):
    """A single node with --durability always is SIGKILLed while four clients write,
    then restarted, `--crash-cycles` times (100 by default). After every restart each
    write acknowledged in the cycle that just ended reads back exactly, so does a
    rotating sample of older ones, and the node holds at least as many keys as were
    ever acknowledged; at the end every acknowledged write reads back exactly, and a
    write that was cut off is either absent or whole."""
    cycles = chaos_settings.crash_cycles
    rng = random.Random(f"{chaos_settings.seed}/crash")
    node = Node(ringstore_bin, run_folder / "data", run_folder / "logs", ["--durability", "always"])
    acknowledged: list[str] = []
    attempted: list[str] = []
    last_cycle: list[str] = []
    started = time.monotonic()
    try:
        for cycle in range(cycles):
            start_despite_rebuilds(node.start)
            connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
            try:
                sample = rng.sample(acknowledged, min(30, len(acknowledged)))
                for key in last_cycle + sample:
                    status, body = read_value(connection, key)
                    assert status == 200 and body == checked_value(key), (
                        f"cycle {cycle}: acknowledged {key} reads {status} {body[:80]!r} after a SIGKILL\n{node.log_tail()}")
            finally:
                connection.close()
            held = health_keys(node)
            assert held >= len(acknowledged), f"cycle {cycle}: the node holds {held} keys, {len(acknowledged)} were acknowledged"

            writers = [CycleWriter(node.port, f"c{cycle:03d}-w{index}") for index in range(WRITERS)]
            for writer in writers:
                writer.start()
            time.sleep(rng.uniform(0.03, 0.2))
            assert all(writer.is_alive() for writer in writers), [w.unexpected for w in writers]
            node.kill()
            last_cycle = []
            for writer in writers:
                writer.join(20)
                assert not writer.unexpected, writer.unexpected
                last_cycle.extend(writer.acknowledged)
                attempted.extend(writer.attempted)
            acknowledged.extend(last_cycle)

        start_despite_rebuilds(node.start)
        acknowledged_set = set(acknowledged)
        connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
        try:
            for key in attempted:
                status, body = read_value(connection, key)
                if key in acknowledged_set:
                    assert status == 200 and body == checked_value(key), f"acknowledged {key} reads {status} {body[:80]!r}"
                else:
                    assert status == 404 or (status == 200 and body == checked_value(key)), (
                        f"{key}, cut off by a SIGKILL, reads {status} {body[:80]!r}")
        finally:
            connection.close()
    finally:
        node.stop()
    assert len(acknowledged) >= cycles, f"only {len(acknowledged)} writes were acknowledged in {cycles} cycles"
    print(f"{cycles} SIGKILL cycles in {time.monotonic() - started:.1f} s: {len(acknowledged)} writes acknowledged, "
          f"{len(attempted) - len(acknowledged)} cut off, none lost")


# ---------------------------------------------------------------------------
# Damaged files


KEYS_PER_BATCH = 120
NODE_HOSTS = ("127.0.0.21", "127.0.0.22", "127.0.0.23")


def segments(data: Path) -> list[Path]:
    return sorted((data / "storage").glob("*.seg"))


def record_of(segment: Path, key: str) -> int:
    """The offset of the stored value of `key` (its payload, inside the record) in `segment`."""
    payload = checked_value(key).split(b"#")[0]
    offset = segment.read_bytes().find(payload)
    assert offset >= 0, f"{key} is not in {segment}"
    return offset


def flip_bit(segment: Path, offset: int) -> None:
    data = bytearray(segment.read_bytes())
    data[offset] ^= 0x10
    segment.write_bytes(bytes(data))


def write_batch(cluster: ChaosCluster, prefix: str) -> list[str]:
    keys = [f"{prefix}-{index:04d}" for index in range(KEYS_PER_BATCH)]
    rs1 = cluster.ring_servers["rs1"]
    for key in keys:
        reply = rs1.request("PUT", kv("default", key, "w=3"), body=checked_value(key))
        assert reply.status == 204, (key, reply)
    return keys


def restart(cluster: ChaosCluster, name: str, kill: bool = False) -> None:
    proc = cluster.nodes[name]
    proc.kill() if kill else proc.stop()
    proc.start()
    cluster.wait_until_formed()


def served_values(cluster: ChaosCluster, key: str, query: str = "") -> list[tuple[str, int, list[bytes] | None]]:
    """What a read of `key` returns through each ring server and from the damaged node."""
    found = []
    for proc in [*cluster.ring_servers.values(), cluster.nodes["n3"]]:
        for attempt in range(3):
            try:
                reply = proc.request("GET", kv("default", key, query))
                break
            except OSError:
                if attempt == 2:
                    raise
                time.sleep(0.2)
        found.append((proc.name, reply.status, live_values(reply)))
    return found


def test_a_damaged_node_never_serves_corrupt_values_and_is_repaired(ringstore_bin, run_folder):
    """On a cluster of three nodes (every node holds every key), n3 is stopped and its
    files damaged: a bit flipped in a record of a segment that has a hint file, a bit
    flipped in a record of a segment whose hint file is deleted, and the last segment
    cut in the middle of a record. Restarted, n3 reports the damage in its log; reads
    through both ring servers and from n3 itself serve only whole values (never a
    corrupt one); and after `ringstore admin repair` every key reads back exactly
    with r=3, and with r=1 from n3's own copy."""
    cluster = ChaosCluster(ringstore_bin, run_folder, node_hosts=NODE_HOSTS)
    try:
        cluster.start()
        victim = cluster.nodes["n3"]
        data = victim.data_dir
        first = write_batch(cluster, "first")
        restart(cluster, "n3")  # the segment holding `first` is closed and gets a hint file
        second = write_batch(cluster, "second")
        restart(cluster, "n3")
        third = write_batch(cluster, "third")
        victim.kill()

        files = segments(data)
        assert len(files) >= 3, files
        with_hint = next(path for path in files if path.with_suffix(".hint").exists() and first[0].encode() in path.read_bytes())
        without_hint = next(path for path in files if second[0].encode() in path.read_bytes())
        last = next(path for path in files if third[0].encode() in path.read_bytes())
        assert len({with_hint, without_hint, last}) == 3, files
        flipped_with_hint = first[KEYS_PER_BATCH // 2]
        flip_bit(with_hint, record_of(with_hint, flipped_with_hint) + 5)
        without_hint.with_suffix(".hint").unlink()
        flipped_scanned = second[KEYS_PER_BATCH // 2]
        flip_bit(without_hint, record_of(without_hint, flipped_scanned) + 5)
        size = last.stat().st_size
        cut_at = record_of(last, third[-3]) + 7  # inside the third-to-last record: it and the two after are torn
        assert cut_at < size
        with open(last, "r+b") as segment:
            segment.truncate(cut_at)

        victim.start()
        cluster.wait_until_formed()
        every = first + second + third
        corrupt_served = []
        for key in every:
            for query in ("", "r=1"):
                for who, status, values in served_values(cluster, key, query):
                    if values is None:
                        assert status >= 500, (who, key, status)  # a clean error, never a garbled success
                    for value in values or []:
                        if not value_is_intact(value, key):
                            corrupt_served.append((who, key, query, value[:60]))
        assert not corrupt_served, f"corrupt values served: {corrupt_served[:5]}"

        log = victim.log_text()
        assert re.search(r"failed (its|their) checksum", log), f"n3's log does not report the flipped bits:\n{victim.log_tail()}"
        assert "torn tail" in log, f"n3's log does not report the truncated segment:\n{victim.log_tail()}"
        recovered = re.findall(r"corruptRegionsSkipped=(\d+) directory=\S+/storage .*?tornBytesTruncated=(\d+)", log)
        assert recovered and int(recovered[-1][0]) >= 1 and int(recovered[-1][1]) > 0, recovered

        output = cluster.repair()
        assert "keys repaired" in output, output
        wrong = []
        for key in every:
            for proc in cluster.ring_servers.values():
                reply = proc.request("GET", kv("default", key, "r=3"))
                if reply.status != 200 or reply.body != checked_value(key):
                    wrong.append((proc.name, key, reply.status, reply.body[:60]))
            own = victim.request("GET", kv("default", key, "r=1"))
            if own.status != 200 or own.body != checked_value(key):
                wrong.append(("n3 r=1", key, own.status, own.body[:60]))
        damage = {flipped_with_hint: "a flipped bit in a segment with a hint file",
                  flipped_scanned: "a flipped bit in a segment whose hint file was deleted",
                  **{key: "cut off with the end of the last segment" for key in third[-3:]}}
        assert not wrong, (f"{len(wrong)} reads after `ringstore admin repair` are wrong, e.g. {wrong[:5]}; damaged keys: "
                           f"{damage}\nrepair said: {output}\nlogs: {run_folder / 'logs'}")
        print(f"damaged n3: flipped {flipped_with_hint} (hinted) and {flipped_scanned} (scanned), cut {last.name} "
              f"from {size} to {cut_at} bytes; repair: {output.strip().splitlines()[0]}")
    finally:
        cluster.stop()
