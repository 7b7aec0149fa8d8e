"""Real Ringstore processes and plain HTTP to them, for the black-box suites.

Every process started here is registered, stopped by the fixture that started it
(SIGTERM, then SIGKILL after a timeout), and killed at interpreter exit if a
fixture could not run. Nodes listen on 127.0.0.1 only, on a port the kernel picks.
"""

from __future__ import annotations

import atexit
import http.client
import itertools
import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping
from urllib.parse import quote

from tests.ports import reserve

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"

NODE_START_TIMEOUT_SECONDS = 30.0
NODE_STOP_TIMEOUT_SECONDS = 10.0
HTTP_TIMEOUT_SECONDS = 15.0
CLI_TIMEOUT_SECONDS = 30.0

# The line `ringstore node` prints on stdout once it accepts connections.
LISTENING_LINE = re.compile(r"^ringstore node listening on http://([^\s:]+):(\d+) data=(.+)$", re.MULTILINE)


def ringstore_binary() -> Path:
    """The binary under test: $RINGSTORE_BIN, else .build/debug/ringstore; relative paths start at the repository root."""
    path = Path(os.environ.get("RINGSTORE_BIN") or ".build/debug/ringstore")
    return path if path.is_absolute() else REPO_ROOT / path


# ---------------------------------------------------------------------------
# Processes

_started_lock = threading.Lock()
_started: set[subprocess.Popen] = set()


def _register(process: subprocess.Popen) -> None:
    with _started_lock:
        _started.add(process)


def _forget(process: subprocess.Popen) -> None:
    with _started_lock:
        _started.discard(process)


def stop_process(process: subprocess.Popen, timeout: float = NODE_STOP_TIMEOUT_SECONDS) -> int:
    """SIGTERM, wait up to `timeout`, then SIGKILL; returns the exit status (negative: killed by that signal)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _forget(process)
    return process.returncode


@atexit.register
def _kill_leftovers() -> None:
    """Last resort for processes whose fixture never ran its teardown (for example on Ctrl-C)."""
    with _started_lock:
        leftovers = list(_started)
    for process in leftovers:
        if process.poll() is None:
            process.kill()
            process.wait()
        _forget(process)


class Node:
    """One `ringstore node` process on loopback, restartable on the same data folder."""

    _ids = itertools.count(1)

    def __init__(self, binary: Path, data_dir: Path, log_dir: Path, args: Iterable[str] = ()):
        self.binary = binary
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.args = list(args)
        self.name = f"node{next(self._ids)}"
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self.runs = 0
        self._stdout_path: Path | None = None
        self._stderr_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> "Node":
        """Starts the process and waits for its listening line; raises with its log if it does not come."""
        assert not self.running, f"{self.name} is already running"
        self.runs += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._stdout_path = self.log_dir / f"{self.name}-run{self.runs}.stdout"
        self._stderr_path = self.log_dir / f"{self.name}-run{self.runs}.stderr"
        command = [str(self.binary), "node", "--data", str(self.data_dir), "--http", f"{LOOPBACK}:0", *self.args]
        with open(self._stdout_path, "wb") as stdout, open(self._stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        _register(self.process)
        deadline = time.monotonic() + NODE_START_TIMEOUT_SECONDS
        while True:
            match = LISTENING_LINE.search(self._stdout_path.read_text(errors="replace"))
            if match:
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                stop_process(self.process)
                raise RuntimeError(
                    f"{self.name} did not start ({' '.join(command)}), exit status {self.process.returncode}:\n{self.log_tail()}")
            time.sleep(0.01)
        host, port, data = match.group(1), int(match.group(2)), match.group(3)
        assert host == LOOPBACK, f"{self.name} listens on {host}, not loopback"
        assert data == str(self.data_dir), f"{self.name} reports data={data}"
        assert port > 0
        self.port = port
        return self

    def terminate(self, timeout: float = NODE_STOP_TIMEOUT_SECONDS) -> int:
        """Graceful stop: SIGTERM, SIGKILL after `timeout`. Returns the exit status."""
        assert self.process is not None
        return stop_process(self.process, timeout)

    def kill(self) -> int:
        """Crash: SIGKILL, no chance to sync. Returns the exit status (-9)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        _forget(self.process)
        return self.process.returncode

    def stop(self) -> None:
        """Teardown: stops the process if it still runs."""
        if self.process is not None:
            stop_process(self.process)

    def restart(self) -> "Node":
        """SIGTERM, then a new process on the same data folder (it gets a new port)."""
        self.terminate()
        return self.start()

    def log_tail(self, characters: int = 4000) -> str:
        if self._stderr_path is None or not self._stderr_path.exists():
            return ""
        return self._stderr_path.read_text(errors="replace")[-characters:]

    def request(self, method: str, path: str, **kwargs) -> "Reply":
        assert self.port is not None, f"{self.name} has not started"
        return request(self.port, method, path, **kwargs)


class NodePool:
    """Nodes started for one fixture scope; `stop_all` ends every one of them."""

    def __init__(self, binary: Path, base_dir: Path):
        self.binary = binary
        self.base_dir = base_dir
        self.nodes: list[Node] = []

    def start(self, *args: str, data_dir: Path | None = None) -> Node:
        data = data_dir or self.base_dir / f"data{len(self.nodes) + 1}"
        node = Node(self.binary, data, self.base_dir / "logs", args)
        self.nodes.append(node)
        return node.start()

    def stop_all(self) -> None:
        for node in self.nodes:
            node.stop()


# ---------------------------------------------------------------------------
# HTTP


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first header of that name, compared without case."""
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)

    def has_header(self, name: str) -> bool:
        return self.header(name) is not None

    @property
    def content_type(self) -> str | None:
        return self.header("Content-Type")

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.headers!r}, {self.body[:300]!r})"


def request(
    port: int, method: str, path: str, body: bytes | str | None = None, headers: Mapping[str, str] | None = None,
    chunked: bool = False, timeout: float = HTTP_TIMEOUT_SECONDS,
) -> Reply:
    """One request on a fresh connection, with `path` sent exactly as given (no re-encoding)."""
    if isinstance(body, str):
        body = body.encode()
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        if chunked:
            connection.putrequest(method, path, skip_accept_encoding=True)
            for name, value in (headers or {}).items():
                connection.putheader(name, value)
            connection.putheader("Transfer-Encoding", "chunked")
            connection.endheaders()
            data = body or b""
            for start in range(0, len(data), 256):
                piece = data[start:start + 256]
                connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            connection.send(b"0\r\n\r\n")
        else:
            connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return Reply(response.status, response.getheaders(), response.read())
    finally:
        connection.close()


def kv_path(table: str, key: str | bytes, safe: str = "") -> str:
    """`/v1/kv/{table}/{key}` with the key percent-encoded (`safe` lists characters left as they are)."""
    return f"/v1/kv/{quote(table, safe='')}/{quote(key, safe=safe)}"


def error_code(reply: Reply) -> str:
    """Checks that `reply` carries the JSON error body and returns its code."""
    assert reply.content_type == "application/json", reply
    body = reply.json()
    assert isinstance(body, dict) and set(body) == {"error", "message"}, reply
    assert isinstance(body["error"], str) and body["error"], reply
    assert isinstance(body["message"], str) and body["message"], reply
    return body["error"]


def children_of(pid: int) -> list[int]:
    """Direct children of a process, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found


def unused_loopback_port() -> int:
    """A loopback port nothing listens on (see tests/ports.py)."""
    return reserve(1, LOOPBACK)[0]


def run_cli(binary: Path, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Runs a client subcommand to completion (killed if it outlives the timeout)."""
    environment = {key: value for key, value in os.environ.items() if key != "RINGSTORE_URL"}
    environment.update(env or {})
    return subprocess.run(
        [str(binary), *args], input=input, capture_output=True, timeout=CLI_TIMEOUT_SECONDS, env=environment,
        stdin=None if input is not None else subprocess.DEVNULL)
