"""Network partitions between loopback addresses, as nftables rules.

The suite owns one table, `inet ringstore_chaos`, with one chain on the output
hook. Every rule drops packets from a set of source addresses to a set of
destination addresses, all inside 127.0.0.0/8: each Ringstore process listens on
an address of its own and sends from it, so a rule on addresses singles out
processes. The table is deleted when a previous run left it, after the suite
(fixture finalizer) and at interpreter exit, whatever happened.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import subprocess
import threading
from typing import Iterable

TABLE = "ringstore_chaos"
CHAIN = "output"
LOOPBACK_NETWORK = ipaddress.ip_network("127.0.0.0/8")
NFT_TIMEOUT_SECONDS = 10.0


class FirewallError(RuntimeError):
    pass


def nft(script: str) -> str:
    """Runs an nft script (`nft -f -`); raises with nft's message when it fails."""
    result = subprocess.run(["nft", "-f", "-"], input=script.encode(), capture_output=True, timeout=NFT_TIMEOUT_SECONDS)
    if result.returncode != 0:
        raise FirewallError(f"nft failed ({result.returncode}) on:\n{script}\n{result.stderr.decode(errors='replace')}")
    return result.stdout.decode(errors="replace")


def table_exists() -> bool:
    result = subprocess.run(["nft", "list", "table", "inet", TABLE], capture_output=True, timeout=NFT_TIMEOUT_SECONDS)
    return result.returncode == 0


def delete_table() -> None:
    """Deletes the suite's table if it exists (and nothing else)."""
    if shutil.which("nft") and table_exists():
        nft(f"delete table inet {TABLE}\n")


def unavailable_reason() -> str | None:
    """Why partitions cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network partitions need root (nftables)"
    if shutil.which("nft") is None:
        return "nft is not installed (apt-get install -y nftables; scripts/test does it)"
    return None


def _loopback(address: str) -> str:
    parsed = ipaddress.ip_address(address)
    if parsed.version != 4 or parsed not in LOOPBACK_NETWORK:
        raise FirewallError(f"refusing a rule on {address}: only 127.0.0.0/8 addresses are ever cut")
    return str(parsed)


def _address_set(addresses: Iterable[str]) -> str:
    listed = sorted({_loopback(address) for address in addresses}, key=ipaddress.ip_address)
    if not listed:
        raise FirewallError("a rule needs at least one address on each side")
    return "{ " + ", ".join(listed) + " }"


class Firewall:
    """The suite's nftables table: `cut` adds drop rules, `heal` removes them all."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rules: list[str] = []
        self.installed = False

    def install(self) -> "Firewall":
        """Deletes a table a previous run left, then creates an empty one."""
        with self.lock:
            delete_table()
            atexit.register(_delete_at_exit)
            nft(f"add table inet {TABLE}\n"
                f"add chain inet {TABLE} {CHAIN} {{ type filter hook output priority 0; policy accept; }}\n")
            self.installed = True
        return self

    def cut(self, sources: Iterable[str], destinations: Iterable[str], both_ways: bool = True) -> None:
        """Drops packets from `sources` to `destinations` (and back, with `both_ways`)."""
        sources, destinations = list(sources), list(destinations)
        if set(sources) & set(destinations):
            raise FirewallError(f"an address on both sides of a cut: {sorted(set(sources) & set(destinations))}")
        rules = [f"ip saddr {_address_set(sources)} ip daddr {_address_set(destinations)} drop"]
        if both_ways:
            rules.append(f"ip saddr {_address_set(destinations)} ip daddr {_address_set(sources)} drop")
        with self.lock:
            assert self.installed, "install() the firewall first"
            nft("".join(f"add rule inet {TABLE} {CHAIN} {rule}\n" for rule in rules))
            self.rules.extend(rules)

    def heal(self) -> None:
        """Removes every rule: all traffic flows again."""
        with self.lock:
            if self.installed:
                nft(f"flush chain inet {TABLE} {CHAIN}\n")
            self.rules.clear()

    def listing(self) -> str:
        return subprocess.run(["nft", "list", "table", "inet", TABLE], capture_output=True, timeout=NFT_TIMEOUT_SECONDS).stdout.decode()

    def remove(self) -> None:
        """Deletes the table."""
        with self.lock:
            delete_table()
            self.installed = False
            self.rules.clear()


def _delete_at_exit() -> None:
    try:
        delete_table()
    except Exception:  # noqa: BLE001 - nothing more can be done at exit
        pass
