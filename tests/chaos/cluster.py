"""A Ringstore cluster for the chaos suite: every process on a loopback address of
its own, so that firewall rules on addresses (tests/chaos/firewall.py) single out
processes.

Ring servers listen on 127.0.0.11 and 127.0.0.12, nodes on 127.0.0.21 and up, each
with --http and --rpc on its own address, on ports found free on that address when
the cluster is made. One node's data folder can be a tmpfs of its own (mounted
before the node starts, unmounted when the cluster stops), which the nemesis fills
to run the node out of disk. Processes log to the run folder, one file per run."""

from __future__ import annotations

import atexit
import errno
import hashlib
import http.client
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Mapping
from urllib.parse import quote

from tests.harness import Reply, run_cli
from tests.ring_harness import ClusterViews, Proc, joining_node_args, ring_server_args
from tests.ports import reserve

RING_HOSTS = ("127.0.0.11", "127.0.0.12")
NODE_HOSTS = ("127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.24", "127.0.0.25")
PARTITIONS = 64
ADMIN_TOKEN = "chaos-admin-token"
HTTP_TIMEOUT_SECONDS = 5.0
FILLER_NAME = "chaos-filler"


class NotSent(OSError):
    """The connection failed before the request was sent: it certainly did nothing."""


def call(host: str, port: int, method: str, path: str, body: bytes | str | None = None,
         headers: Mapping[str, str] | None = None, timeout: float = HTTP_TIMEOUT_SECONDS) -> Reply:
    """One request on a fresh connection. Raises `NotSent` when it could not connect,
    and another OSError (or http.client error, as OSError) when it failed after sending."""
    if isinstance(body, str):
        body = body.encode()
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        try:
            connection.connect()
        except OSError as error:
            raise NotSent(f"{host}:{port}: {error}") from error
        try:
            connection.request(method, path, body=body, headers=dict(headers or {}))
            response = connection.getresponse()
            return Reply(response.status, response.getheaders(), response.read())
        except http.client.HTTPException as error:
            raise ConnectionError(f"{host}:{port}: {error!r}") from error
    finally:
        connection.close()


def kv(table: str, key: str, query: str = "") -> str:
    return f"/v1/kv/{quote(table, safe='')}/{quote(key, safe='')}" + (f"?{query}" if query else "")


def partition_of(table: str, key: str, partitions: int = PARTITIONS) -> int:
    """The top log2(Q) bits of the first 8 bytes of MD5(table 0x00 key) (docs/architecture.md)."""
    digest = hashlib.md5(table.encode() + b"\0" + key.encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - (partitions.bit_length() - 1))


def preference_list(owners: list[str], table: str, key: str) -> list[str]:
    """The key's partition owner, then the next distinct owners clockwise."""
    start = partition_of(table, key, len(owners))
    found: list[str] = []
    for step in range(len(owners)):
        owner = owners[(start + step) % len(owners)]
        if owner not in found:
            found.append(owner)
    return found


BINARY_BUSY_SECONDS = 180.0


def start_despite_rebuilds(start):
    """Calls `start()`, again while the binary is being replaced by a build (a
    process cannot be started from a file open for writing, or from none)."""
    deadline = time.monotonic() + BINARY_BUSY_SECONDS
    while True:
        try:
            return start()
        except OSError as error:
            if error.errno not in (errno.ETXTBSY, errno.ENOENT) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class Host(Proc):
    """One process on its own loopback address; it can be paused (SIGSTOP) and resumed."""

    def __init__(self, binary: Path, name: str, host: str, http_port: int, rpc_port: int, args: list[str], log_dir: Path,
                 data_dir: Path):
        super().__init__(binary, name, args, http_port, log_dir)
        self.host = host
        self.rpc_port = rpc_port
        self.data_dir = data_dir
        self.paused = False
        self.down_on_purpose = False  # killed by the nemesis, not crashed

    def start(self) -> "Host":
        start_despite_rebuilds(super().start)
        self.paused = False
        self.down_on_purpose = False
        return self

    def request(self, method: str, path: str, body=None, headers=None, timeout: float = HTTP_TIMEOUT_SECONDS) -> Reply:
        return call(self.host, self.port, method, path, body=body, headers=headers, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL (a paused process dies too)."""
        self.down_on_purpose = True
        super().kill()
        self.paused = False

    def pause(self) -> None:
        if self.running:
            self.process.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        self.resume()
        self.down_on_purpose = True
        super().stop()

    def crashed(self) -> bool:
        """Whether the process exited without being told to."""
        return self.process is not None and self.process.poll() is not None and not self.down_on_purpose

    def log_text(self) -> str:
        """Everything this process logged on stderr, over all its runs."""
        return "".join(path.read_text(errors="replace") for path in sorted(self.log_dir.glob(f"{self.name}-run*.stderr")))

    def metrics(self, timeout: float = 2.0) -> dict[str, float]:
        """Unlabelled counters and gauges from /metrics (labelled series are summed)."""
        text = self.request("GET", "/metrics", timeout=timeout).body.decode(errors="replace")
        values: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            match = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)", line)
            if match:
                try:
                    values[match.group(1)] = values.get(match.group(1), 0.0) + float(match.group(3))
                except ValueError:
                    pass
        return values


_mounts_lock = threading.Lock()
_mounts: set[Path] = set()


def unmount(path: Path) -> None:
    """Unmounts a tmpfs this suite mounted (lazily if it is still busy)."""
    result = subprocess.run(["umount", str(path)], capture_output=True, timeout=30)
    if result.returncode != 0 and is_mount(path):
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)
    with _mounts_lock:
        _mounts.discard(path)


def is_mount(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/mounts") as mounts:
        return any(line.split()[1] == target for line in mounts if len(line.split()) > 1)


@atexit.register
def _unmount_leftovers() -> None:
    with _mounts_lock:
        leftovers = list(_mounts)
    for path in leftovers:
        try:
            unmount(path)
        except Exception:  # noqa: BLE001 - last resort at exit
            pass


def unmount_leftovers(base: Path) -> None:
    """Unmounts tmpfs file systems a run killed before its teardown left under `base`."""
    if os.geteuid() != 0:
        return
    root = str(base.resolve()) + "/"
    with open("/proc/mounts") as mounts:
        stale = [line.split()[1] for line in mounts if line.split()[0] == "tmpfs" and line.split()[1].startswith(root)]
    for path in stale:
        subprocess.run(["umount", "-l", path], capture_output=True, timeout=30)


def mount_tmpfs(path: Path, mebibytes: int) -> str | None:
    """Mounts a tmpfs of `mebibytes` on `path`; returns why it could not, or None."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mebibytes}m", "tmpfs", str(path)],
                                capture_output=True, timeout=30)
    except OSError as error:
        return f"mount could not run: {error}"
    if result.returncode != 0:
        return f"mount -t tmpfs failed: {result.stderr.decode(errors='replace').strip()}"
    with _mounts_lock:
        _mounts.add(path)
    return None


class ChaosCluster(ClusterViews):
    """Ring servers rs1 (first primary) and rs2, and nodes n1…nN, each on its own address."""

    def __init__(self, binary: Path, folder: Path, node_hosts=NODE_HOSTS, ring_hosts=RING_HOSTS,
                 tmpfs_node: str | None = None, tmpfs_mebibytes: int = 48, node_args=()):
        self.binary = binary
        self.folder = folder
        self.log_dir = folder / "logs"
        self.tmpfs_node = tmpfs_node
        self.tmpfs_mebibytes = tmpfs_mebibytes
        self.tmpfs_error: str | None = None
        self.mounted: Path | None = None
        ports: dict[str, tuple[int, int]] = {}
        for host in [*ring_hosts, *node_hosts]:
            http_port, rpc_port = reserve(2, host)
            ports[host] = (http_port, rpc_port)
        self.join = ",".join(f"{host}:{ports[host][1]}" for host in ring_hosts)
        self.ring_servers: dict[str, Host] = {}
        for index, host in enumerate(ring_hosts):
            name, peer = f"rs{index + 1}", ring_hosts[1 - index]
            http_port, rpc_port = ports[host]
            self.ring_servers[name] = Host(binary, name, host, http_port, rpc_port, ring_server_args(
                name, index, folder / name, f"{host}:{http_port}", f"{host}:{rpc_port}", f"{peer}:{ports[peer][1]}",
                len(node_hosts), PARTITIONS, ADMIN_TOKEN,
            ), self.log_dir, folder / name)
        self.nodes: dict[str, Host] = {}
        for index, host in enumerate(node_hosts):
            name = f"n{index + 1}"
            http_port, rpc_port = ports[host]
            self.nodes[name] = Host(binary, name, host, http_port, rpc_port, joining_node_args(
                name, folder / name, f"{host}:{http_port}", f"{host}:{rpc_port}", self.join, PARTITIONS, node_args,
            ), self.log_dir, folder / name)

    # -- lifecycle

    @property
    def processes(self) -> list[Host]:
        return [*self.ring_servers.values(), *self.nodes.values()]

    def address(self, name: str) -> str:
        return (self.ring_servers.get(name) or self.nodes[name]).host

    def start(self) -> "ChaosCluster":
        if self.tmpfs_node is not None:
            data = self.nodes[self.tmpfs_node].data_dir
            self.tmpfs_error = mount_tmpfs(data, self.tmpfs_mebibytes)
            if self.tmpfs_error is None:
                self.mounted = data
        for proc in self.ring_servers.values():
            proc.start()
        for proc in self.nodes.values():
            proc.start()
        self.wait_until_formed()
        return self

    def stop(self) -> None:
        """Resumes paused processes, stops all of them, unmounts the tmpfs."""
        for proc in self.processes:
            proc.resume()
        for proc in [*self.nodes.values(), *self.ring_servers.values()]:
            proc.stop()
        if self.mounted is not None:
            unmount(self.mounted)
            self.mounted = None

    # -- views

    def any_ring_server(self) -> Host:
        running = [proc for proc in self.ring_servers.values() if proc.running and not proc.paused]
        assert running, "no ring server is running"
        return running[0]

    def primary(self) -> str | None:
        """The ring server that calls itself primary in the highest term (a restarted
        old primary may still call itself primary of its old term for a heartbeat)."""
        best = None
        for name, proc in self.ring_servers.items():
            if not proc.running or proc.paused:
                continue
            try:
                view = self.view(name)
            except (OSError, ValueError):
                continue
            if view.get("role") == "primary" and (best is None or view.get("term", 0) > best[1]):
                best = (name, view.get("term", 0))
        return best[0] if best else None

    def locate(self, table: str, key: str) -> list[str]:
        """The key's preference list (home replicas first)."""
        reply = self.any_ring_server().request("GET", f"/v1/cluster/locate/{quote(table, safe='')}/{quote(key, safe='')}")
        assert reply.status == 200, reply
        return reply.json()["preference_list"]

    def owners(self) -> list[str]:
        """The current ring: the owner of every partition."""
        return self.any_ring_server().request("GET", "/v1/cluster/ring").json()["owners"]

    def keys_led_by(self, name: str, table: str, prefix: str, count: int) -> list[str]:
        """`count` keys of `table` whose first home replica is node `name`."""
        owners = self.owners()
        keys: list[str] = []
        index = 0
        while len(keys) < count:
            key = f"{prefix}{index:06d}"
            if preference_list(owners, table, key)[0] == name:
                keys.append(key)
            index += 1
        return keys

    def wait_until_formed(self, timeout: float = 60.0) -> float:
        """Until a primary's ring holds every running node, each reachable from the
        primary and from every other node, and every node is ready. Returns the wait."""
        started = time.monotonic()
        last = None
        while True:
            try:
                primary = self.primary()
                running = {name for name, proc in self.nodes.items() if proc.running}
                if primary is not None:
                    view = self.view(primary)
                    last = view
                    members = {m["id"] for m in view["members"] if m["status"] == "member" and m["reachable"]}
                    ready = all(self.nodes[name].request("GET", "/healthz").json().get("ready") for name in running)
                    ready = ready and all(
                        {m["id"] for m in self.nodes[name].request("GET", "/v1/cluster").json()["members"] if m["reachable"]} >= running
                        for name in running)
                    if view["ring_epoch"] > 0 and members >= running and ready:
                        return time.monotonic() - started
            except (OSError, ValueError, KeyError):
                pass
            if time.monotonic() - started > timeout:
                raise AssertionError(f"the cluster did not form within {timeout} s: {last}")
            time.sleep(0.1)

    def create_table(self, name: str, settings: dict, timeout: float = 20.0) -> None:
        """Creates a table through a ring server and waits until every process knows it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = self.any_ring_server().request("PUT", f"/v1/tables/{name}", body=json.dumps(settings))
                if reply.status in (200, 201):
                    break
            except OSError:
                reply = None
            assert time.monotonic() < deadline, f"table {name} could not be created: {reply}"
            time.sleep(0.2)
        for proc in self.processes:
            while True:
                try:
                    if proc.request("GET", f"/v1/tables/{name}").status == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, f"{proc.name} never learned table {name}"
                time.sleep(0.05)

    def repair(self) -> str:
        """`ringstore admin repair`: a full anti-entropy round on every node, now."""
        result = run_cli(self.binary, "admin", "repair", "--url", self.urls(), "--token", ADMIN_TOKEN)
        if result.returncode != 0:
            raise AssertionError(f"ringstore admin repair failed: {result.stderr.decode(errors='replace')}")
        return result.stdout.decode(errors="replace")

    # -- the full disk

    def fill_disk(self, name: str) -> int:
        """Fills the node's tmpfs with a filler file until the file system refuses
        more; returns the bytes written."""
        assert self.mounted is not None and self.nodes[name].data_dir == self.mounted, f"{name} has no tmpfs"
        written = 0
        descriptor = os.open(self.mounted / FILLER_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            for chunk in (1 << 20, 1 << 12, 1 << 9):
                block = b"\0" * chunk
                while True:
                    try:
                        count = os.write(descriptor, block)
                    except OSError as error:
                        if error.errno in (errno.ENOSPC, errno.EDQUOT):
                            break
                        raise
                    written += count
                    if count < chunk:
                        break
        finally:
            os.close(descriptor)
        return written

    def free_disk(self, name: str) -> None:
        assert self.mounted is not None and self.nodes[name].data_dir == self.mounted
        (self.mounted / FILLER_NAME).unlink(missing_ok=True)
