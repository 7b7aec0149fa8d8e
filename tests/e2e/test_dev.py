"""`ringstore dev`: the one-command local cluster starts, serves, and stops every child on Ctrl-C."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time

from tests.harness import children_of, kv_path, request


def test_dev_starts_a_cluster_and_stops_everything_on_ctrl_c(ringstore_bin, tmp_path):
    """Two ring servers and the nodes come up with the ring formed, a write through one
    ring server is read through the other and on every replica, and SIGINT stops all
    child processes."""
    base = random.randrange(20000, 31000, 100)  # below the ephemeral range (32768+), so no outgoing connection holds a port
    log = open(tmp_path / "dev.out", "wb")
    dev = subprocess.Popen([str(ringstore_bin), "dev", "--nodes", "3", "--data", str(tmp_path / "cluster"), "--base-port", str(base)],
                           stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while b"Press Ctrl-C to stop." not in (tmp_path / "dev.out").read_bytes():
            assert dev.poll() is None, (tmp_path / "dev.out").read_text()
            assert time.monotonic() < deadline, (tmp_path / "dev.out").read_text()
            time.sleep(0.1)
        output = (tmp_path / "dev.out").read_text()
        assert str(tmp_path / "cluster") in output
        nodes = children_of(dev.pid)
        assert len(nodes) == 5  # 2 ring servers, 3 nodes
        assert request(base + 80, "GET", "/v1/cluster").json()["role"] == "primary"
        assert request(base + 81, "GET", "/v1/cluster").json()["role"] == "secondary"
        assert request(base + 80, "PUT", kv_path("default", "dev-key"), body=b"hello").status == 204
        reply = request(base + 81, "GET", kv_path("default", "dev-key") + "?r=3")
        assert reply.status == 200 and reply.body == b"hello"
        reply = request(base + 103, "GET", kv_path("default", "dev-key") + "?r=3")
        assert reply.status == 200 and reply.body == b"hello"
        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=30) == 0
        for pid in nodes:
            assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z", f"child {pid} still runs"
        assert "stopped" in (tmp_path / "dev.out").read_text()
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()
        for pid in children_of(dev.pid):
            os.kill(pid, signal.SIGKILL)
        log.close()
