"""What a node keeps across crashes, graceful shutdowns and restarts."""

from __future__ import annotations

import base64
import http.client
import signal
import socket
import subprocess
import threading
import time

import pytest

from tests.harness import LOOPBACK, error_code, kv_path

WRITER_THREADS = 8
WRITE_SECONDS = 3.0
ACKNOWLEDGED_MIN = 100


class Writer(threading.Thread):
    """PUTs unique keys on one keep-alive connection until told to stop or the node dies."""

    def __init__(self, index: int, port: int, stop: threading.Event, node_killed: threading.Event):
        super().__init__(name=f"writer-{index}", daemon=True)
        self.index, self.port, self.stop, self.node_killed = index, port, stop, node_killed
        self.attempted: dict[str, bytes] = {}
        self.acknowledged: dict[str, bytes] = {}
        self.unexpected: list[str] = []

    def value_for(self, key: str, sequence: int) -> bytes:
        size = 16 + (sequence * 131 + self.index * 977) % 3000  # sizes vary, so records straddle pages
        pattern = (key + "|").encode()
        return (pattern * (size // len(pattern) + 1))[:size]

    def run(self) -> None:
        connection = None
        sequence = 0
        while not self.stop.is_set():
            key = f"crash/w{self.index}/{sequence:06d}"
            value = self.value_for(key, sequence)
            self.attempted[key] = value
            try:
                if connection is None:
                    connection = http.client.HTTPConnection(LOOPBACK, self.port, timeout=10)
                connection.request("PUT", kv_path("default", key), body=value, headers={"Content-Type": "application/x-crash"})
                reply = connection.getresponse()
                reply.read()
                if reply.status == 204:
                    self.acknowledged[key] = value
                else:
                    self.unexpected.append(f"{key}: HTTP {reply.status}")
            except (OSError, http.client.HTTPException) as error:
                if connection is not None:
                    connection.close()
                connection = None
                if self.node_killed.is_set():
                    return
                self.unexpected.append(f"{key}: {error!r} before the node was killed")
                return
            sequence += 1
        if connection is not None:
            connection.close()


def test_acknowledged_writes_survive_sigkill(nodes):
    """With --durability always, every PUT answered 204 before a SIGKILL reads back exactly after restart."""
    node = nodes.start("--durability", "always")
    stop, node_killed = threading.Event(), threading.Event()
    writers = [Writer(index, node.port, stop, node_killed) for index in range(WRITER_THREADS)]
    for writer in writers:
        writer.start()
    time.sleep(WRITE_SECONDS)
    assert all(writer.is_alive() for writer in writers), [w.unexpected for w in writers]
    node_killed.set()
    assert node.kill() == -signal.SIGKILL  # mid-writes: every writer is still sending
    stop.set()
    for writer in writers:
        writer.join(timeout=20)
        assert not writer.is_alive(), f"{writer.name} did not finish"
    assert [problem for writer in writers for problem in writer.unexpected] == []

    acknowledged = {key: value for writer in writers for key, value in writer.acknowledged.items()}
    attempted = {key: value for writer in writers for key, value in writer.attempted.items()}
    print(f"\n{len(acknowledged)} PUTs acknowledged by {WRITER_THREADS} writers in {WRITE_SECONDS:.0f} s "
          f"before SIGKILL ({len(attempted) - len(acknowledged)} in flight)")
    assert len(acknowledged) > ACKNOWLEDGED_MIN

    node.start()
    connection = http.client.HTTPConnection(LOOPBACK, node.port, timeout=10)
    lost, torn = [], []
    try:
        for key, value in attempted.items():
            connection.request("GET", kv_path("default", key))
            reply = connection.getresponse()
            body = reply.read()
            if key in acknowledged and (reply.status, body, reply.getheader("Content-Type")) != (200, value, "application/x-crash"):
                lost.append((key, reply.status))
            elif key not in acknowledged and reply.status != 404 and (reply.status, body) != (200, value):
                torn.append((key, reply.status))  # an unacknowledged write may be there or not, but never garbled
    finally:
        connection.close()
    assert lost == [], f"{len(lost)} acknowledged writes lost or changed, first: {lost[:5]}"
    assert torn == [], f"unacknowledged writes read back garbled: {torn[:5]}"
    keys = node.request("GET", "/healthz").json()["keys"]
    assert keys >= len(acknowledged) + 1  # + the table catalogue's record


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_stop_lets_an_in_flight_request_finish(nodes, stop_signal):
    """A PUT whose body is half sent when SIGTERM (or SIGINT) arrives still gets 204, the node exits 0, and the value is there after restart."""
    node = nodes.start()
    value = b"a" * 500 + b"b" * 500
    path = kv_path("default", "in-flight")
    with socket.create_connection((LOOPBACK, node.port), timeout=10) as connection:
        head = (f"PUT {path} HTTP/1.1\r\nHost: {LOOPBACK}:{node.port}\r\nContent-Type: text/plain\r\n"
                f"Content-Length: {len(value)}\r\n\r\n").encode()
        connection.sendall(head + value[:500])
        time.sleep(0.3)  # the node has parsed the head and is waiting for the body
        node.process.send_signal(stop_signal)
        time.sleep(0.5)
        assert node.process.poll() is None, "the node exited with a request in flight"
        connection.sendall(value[500:])
        reply = http.client.HTTPResponse(connection)
        reply.begin()
        reply.read()
        assert reply.status == 204, f"HTTP {reply.status}"
        assert reply.getheader("X-Ringstore-Context")
    started = time.monotonic()
    try:
        status = node.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the node did not exit within 5 s of {stop_signal.name}:\n{node.log_tail()}")
    assert status == 0, f"exit status {status}:\n{node.log_tail()}"
    print(f"\nexited {time.monotonic() - started:.2f} s after the in-flight request finished")

    node.start()
    reply = node.request("GET", path)
    assert (reply.status, reply.body, reply.content_type) == (200, value, "text/plain")


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_restart_keeps_values_deletes_siblings_and_tables(nodes, stop):
    """After a graceful stop or a crash, values, contexts, deletes, siblings and table changes are exactly as before."""
    node = nodes.start()
    context = "X-Ringstore-Context"

    def put(table, key, value, content_type="text/plain", ctx=None):
        headers = {"Content-Type": content_type, **({context: ctx} if ctx else {})}
        reply = node.request("PUT", kv_path(table, key), body=value, headers=headers)
        assert reply.status == 204, reply
        return reply.header(context)

    put("default", "plain", b"kept value", "application/x-kept")
    put("default", "binary", bytes(range(256)), "application/octet-stream")
    put("default", "deleted", b"to delete")
    read = node.request("GET", kv_path("default", "deleted"))
    assert node.request("DELETE", kv_path("default", "deleted"), headers={context: read.header(context)}).status == 204
    put("default", "blind-deleted", b"survivor")
    assert node.request("DELETE", kv_path("default", "blind-deleted")).status == 204
    put("default", "siblings", b"left", "text/plain")
    put("default", "siblings", b"right", "application/json")
    for table in ("kept", "dropped"):
        assert node.request("PUT", f"/v1/tables/{table}").status == 201
        put(table, "row", f"row of {table}".encode())
    assert node.request("DELETE", "/v1/tables/dropped").status == 204

    probes = ["plain", "binary", "deleted", "blind-deleted", "siblings"]

    def state():
        result = {}
        for key in probes:
            reply = node.request("GET", kv_path("default", key))
            result[key] = (reply.status, reply.content_type, reply.header(context), reply.body)
        result["kept/row"] = node.request("GET", kv_path("kept", "row")).body
        result["tables"] = node.request("GET", "/v1/tables").json()
        result["actor"] = node.request("GET", "/healthz").json()["actor"]
        return result

    before = state()
    assert before["plain"][0] == 200 and before["deleted"][0] == 404
    assert before["siblings"][0] == 300 and before["blind-deleted"][0] == 300
    assert [t["name"] for t in before["tables"]["tables"]] == ["default", "kept"]

    if stop == "sigterm":
        assert node.terminate() == 0, node.log_tail()
    else:
        assert node.kill() == -signal.SIGKILL
    node.start()
    after = state()
    # A clean stop keeps the node's actor; after a crash the node takes a new one, so
    # that no version it issued before the crash (and may have lost) is issued again.
    actor_before, actor_after = before.pop("actor"), after.pop("actor")
    assert (actor_after == actor_before) == (stop == "sigterm")
    assert after == before

    deleted = node.request("GET", kv_path("default", "deleted"))
    assert error_code(deleted) == "key_not_found"
    siblings = node.request("GET", kv_path("default", "siblings")).json()["siblings"]
    assert sorted(base64.b64decode(s["value_base64"]) for s in siblings) == [b"left", b"right"]
    # The context read before the restart still resolves the siblings after it.
    put("default", "siblings", b"resolved", ctx=before["siblings"][2])
    assert node.request("GET", kv_path("default", "siblings")).body == b"resolved"
    # A dropped table stays dropped, and creating it again does not bring its keys back.
    assert node.request("GET", "/v1/tables/dropped").status == 404
    assert node.request("PUT", "/v1/tables/dropped").status == 201
    assert error_code(node.request("GET", kv_path("dropped", "row"))) == "key_not_found"
