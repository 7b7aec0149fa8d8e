"""A whole Ringstore cluster of real processes on loopback: two ring servers
(`ringstore ring`) and storage nodes that join through them (`ringstore node --join`).

Every process is started with fixed ports (ring servers and nodes must know each
other's addresses up front), logs to the test's folder, and is stopped by the
fixture that started it."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from tests.harness import (
    LOOPBACK,
    NODE_START_TIMEOUT_SECONDS,
    _forget,
    _register,
    request,
    stop_process,
)
from tests.ports import reserve

LISTENING = re.compile(r"^ringstore (?:node|ring \S+) listening on http://([^\s:]+):(\d+)", re.MULTILINE)


def free_ports(count: int) -> list[int]:
    """Ports for addresses that must be known up front (see tests/ports.py)."""
    return reserve(count, LOOPBACK)


def ring_server_args(name: str, index: int, data: Path, http: str, rpc: str, peer_rpc: str, initial_nodes: int,
                     partitions: int, admin_token: str) -> list[str]:
    """`ringstore ring` for ring server `index` of two (the first starts as primary)."""
    return [
        "ring", "--id", name, "--role", "primary" if index == 0 else "secondary", "--data", str(data),
        "--http", http, "--rpc", rpc, "--peer", f"rs{2 - index}={peer_rpc}",
        "--initial-nodes", str(initial_nodes), "--partitions", str(partitions), "--admin-token", admin_token,
    ]


def joining_node_args(name: str, data: Path, http: str, rpc: str, join: str, partitions: int, extra=()) -> list[str]:
    """`ringstore node` joining through the ring servers at `join`."""
    return [
        "node", "--id", name, "--data", str(data), "--http", http, "--rpc", rpc, "--join", join,
        "--partitions", str(partitions), "--request-timeout-milliseconds", "1000", *extra,
    ]


class Proc:
    """One Ringstore process with fixed arguments, restartable on the same data folder."""

    host = LOOPBACK

    def __init__(self, binary: Path, name: str, args: list[str], http_port: int, log_dir: Path):
        self.binary = binary
        self.name = name
        self.args = args
        self.port = http_port
        self.log_dir = log_dir
        self.process: subprocess.Popen | None = None
        self.runs = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> "Proc":
        assert not self.running, f"{self.name} is already running"
        self.runs += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stdout_path = self.log_dir / f"{self.name}-run{self.runs}.stdout"
        self.stderr_path = self.log_dir / f"{self.name}-run{self.runs}.stderr"
        with open(stdout_path, "wb") as stdout, open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen([str(self.binary), *self.args], stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        _register(self.process)
        deadline = time.monotonic() + NODE_START_TIMEOUT_SECONDS
        while not LISTENING.search(stdout_path.read_text(errors="replace")):
            if self.process.poll() is not None or time.monotonic() > deadline:
                stop_process(self.process)
                raise RuntimeError(f"{self.name} did not start, exit status {self.process.returncode}:\n{self.log_tail()}")
            time.sleep(0.01)
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to sync or say goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
            _forget(self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def log_tail(self, characters: int = 4000) -> str:
        path = getattr(self, "stderr_path", None)
        return path.read_text(errors="replace")[-characters:] if path and path.exists() else ""

    def request(self, method: str, path: str, **kwargs):
        return request(self.port, method, path, **kwargs)


class ClusterViews:
    """What every cluster of ring servers and nodes answers about itself."""

    ring_servers: dict[str, Proc]
    nodes: dict[str, Proc]

    def view(self, name: str) -> dict:
        return self.ring_servers[name].request("GET", "/v1/cluster").json()

    def role(self, name: str) -> str | None:
        try:
            return self.view(name)["role"]
        except (OSError, ValueError):
            return None

    def urls(self) -> str:
        return ",".join(f"http://{proc.host}:{proc.port}" for proc in self.ring_servers.values())


class RingCluster(ClusterViews):
    """Ring servers rs1 (first primary) and rs2, and nodes n1…nN joined through them."""

    ADMIN_TOKEN = "test-admin-token"
    PARTITIONS = 64

    def __init__(self, binary: Path, folder: Path, node_count: int, initial_nodes: int | None = None, node_args=()):
        self.binary = binary
        self.folder = folder
        ports = free_ports(4 + 2 * node_count + 4)
        self.spare_ports = ports[4 + 2 * node_count:]
        rs_http, rs_rpc = ports[0:2], ports[2:4]
        self.ring_rpc = rs_rpc
        self.join = ",".join(f"{LOOPBACK}:{port}" for port in rs_rpc)
        self.ring_servers: dict[str, Proc] = {}
        for index in range(2):
            name = f"rs{index + 1}"
            self.ring_servers[name] = Proc(binary, name, ring_server_args(
                name, index, folder / name, f"{LOOPBACK}:{rs_http[index]}", f"{LOOPBACK}:{rs_rpc[index]}",
                f"{LOOPBACK}:{rs_rpc[1 - index]}", initial_nodes or node_count, self.PARTITIONS, self.ADMIN_TOKEN,
            ), rs_http[index], folder / "logs")
        self.node_args = list(node_args)
        self.nodes: dict[str, Proc] = {}
        node_ports = ports[4:4 + 2 * node_count]
        for index in range(node_count):
            self.add_node(f"n{index + 1}", node_ports[2 * index], node_ports[2 * index + 1])

    def add_node(self, name: str, http_port: int | None = None, rpc_port: int | None = None) -> Proc:
        if http_port is None:
            http_port, rpc_port = self.spare_ports.pop(), self.spare_ports.pop()
        self.nodes[name] = Proc(self.binary, name, joining_node_args(
            name, self.folder / name, f"{LOOPBACK}:{http_port}", f"{LOOPBACK}:{rpc_port}", self.join, self.PARTITIONS,
            self.node_args,
        ), http_port, self.folder / "logs")
        return self.nodes[name]

    def start(self) -> "RingCluster":
        for proc in self.ring_servers.values():
            proc.start()
        for proc in self.nodes.values():
            proc.start()
        self.wait_until_formed()
        return self

    def stop(self) -> None:
        for proc in [*self.nodes.values(), *self.ring_servers.values()]:
            proc.stop()

    def primary(self) -> str | None:
        primaries = [name for name, proc in self.ring_servers.items() if proc.running and self.role(name) == "primary"]
        assert len(primaries) <= 1, f"two ring servers act as primary: {primaries}"
        return primaries[0] if primaries else None

    def admin(self, method: str, path: str, token: str | None = ADMIN_TOKEN):
        """An admin request to whichever ring server is primary."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        primary = self.primary() or "rs1"
        return self.ring_servers[primary].request(method, path, headers=headers)

    def wait_until_formed(self, timeout: float = 30.0) -> None:
        """Until the primary's ring holds every started node, each reachable, and every node is ready."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                view = self.view("rs1")
                running = {name for name, proc in self.nodes.items() if proc.running}
                members = {m["id"] for m in view["members"] if m["status"] == "member" and m["reachable"]}
                ready = all(self.nodes[name].request("GET", "/healthz").json().get("ready") for name in running)
                # …and every node reaches every other (peers count as down until they answer a ping).
                ready = ready and all(
                    {m["id"] for m in self.nodes[name].request("GET", "/v1/cluster").json()["members"] if m["reachable"]} >= running
                    for name in running)
                if view["ring_epoch"] > 0 and members >= running and ready:
                    return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the cluster did not form: {self.view('rs1')}"
            time.sleep(0.1)
