"""Listening ports for test processes whose addresses must be known before they start
(ring servers and nodes name each other in --peer, --peers and --join).

Ports come from 10000–19999: below the kernel's ephemeral range (32768+ here), so no
outgoing connection of any process can take one between the pick and the bind, and
apart from the 20000–31999 bases the `ringstore dev` tests pick. A port is handed out
once per test session and only when nothing is bound to it, not even a connection in
TIME_WAIT."""

from __future__ import annotations

import random
import socket
import threading

FIRST, LAST = 10_000, 19_999

_lock = threading.Lock()
_handed_out: set[tuple[str, int]] = set()
_random = random.Random()


def bindable(host: str, port: int) -> bool:
    """Whether nothing is bound to `port` at `host` (not even a connection in TIME_WAIT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
            return True
        except OSError:
            return False


def reserve(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports nothing is bound to at `host`, never handed out before."""
    ports: list[int] = []
    with _lock:
        for _ in range(20 * (LAST - FIRST)):
            if len(ports) == count:
                return ports
            port = _random.randint(FIRST, LAST)
            if (host, port) in _handed_out or not bindable(host, port):
                continue
            _handed_out.add((host, port))
            ports.append(port)
    raise RuntimeError(f"no {count} free ports on {host} between {FIRST} and {LAST}")
