"""The nemesis: faults on a timetable drawn from a seed, one at a time, each a few
seconds long and followed by a healing gap.

Faults (`KINDS`): SIGKILL and restart of a node or a ring server; SIGSTOP and
SIGCONT of a node or a ring server; partitions (a node alone, the nodes split into
a majority and a minority, both ring servers cut from the nodes, the primary ring
server cut from the secondary), both ways or one way; and a full disk (the node on
a tmpfs of its own is filled up, writes through it are probed, then space is freed
and writes through it must succeed again). Only one fault is active at a time, so at
most one node-level fault: a majority of every key's three replicas usually
survives. The nemesis also notices processes that exit on their own (crashes),
records them and restarts them, and collects counters from the nodes' /metrics.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from tests.chaos.cluster import ChaosCluster, Host, NotSent, kv
from tests.chaos.firewall import Firewall
from tests.chaos.workload import Outcome, UniqueWrites, checked_value, json_body

KINDS = (
    "kill-node", "pause-node", "isolate-node", "split-nodes", "disk-full",
    "kill-ring-server", "pause-ring-server", "ring-servers-cut-from-nodes", "primary-cut-from-secondary",
)
NODE_LEVEL = {"kill-node", "pause-node", "isolate-node", "split-nodes", "disk-full"}
PARTITIONS = {"isolate-node", "split-nodes", "ring-servers-cut-from-nodes", "primary-cut-from-secondary"}
FAULT_SECONDS = (3.0, 6.0)
GAP_SECONDS = (2.0, 4.0)
QUIET_START_SECONDS = 3.0
DISK_RECOVERY_SECONDS = 15.0
PROBE_TIMEOUT_SECONDS = 10.0
COUNTERS = ("ringstore_hints_delivered_total", "ringstore_aae_keys_repaired_total", "ringstore_aae_tombstones_purged_total")


@dataclass
class Fault:
    """One entry of the timetable; `started`, `healed` (monotonic) and `notes` are filled in as it runs."""

    kind: str
    at: float
    duration: float
    target: str
    both_ways: bool = True
    started: float | None = None
    healed: float | None = None
    resolved: str = ""
    notes: dict = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def describe(self) -> str:
        way = "" if self.kind not in PARTITIONS else (" both ways" if self.both_ways else " one way")
        return f"{self.kind} {self.resolved or self.target}{way}"


def timetable(seed: int, duration: float, nodes: list[str], disk_node: str | None, partitions: bool) -> list[Fault]:
    """Faults that fit in `duration` seconds: kinds drawn from a bag holding each kind
    once (refilled when empty, so a short run sees every kind), targets, lengths and
    gaps drawn from `seed`."""
    rng = random.Random(seed)
    kinds = [kind for kind in KINDS if (kind != "disk-full" or disk_node) and (kind not in PARTITIONS or partitions)]
    faults: list[Fault] = []
    bag: list[str] = []
    at = QUIET_START_SECONDS
    while True:
        if not bag:
            bag = list(kinds)
            rng.shuffle(bag)
            if faults and bag[-1] == faults[-1].kind:
                bag.insert(0, bag.pop())
        kind = bag.pop()
        length = round(rng.uniform(*FAULT_SECONDS), 1)
        if at + length > duration:
            break
        both_ways = kind not in PARTITIONS or rng.random() < 0.75
        if kind in ("kill-node", "pause-node", "isolate-node"):
            target = rng.choice(nodes)
        elif kind == "split-nodes":
            target = ",".join(sorted(rng.sample(nodes, len(nodes) // 2)))
        elif kind == "disk-full":
            target = disk_node
        elif kind in ("kill-ring-server", "pause-ring-server"):
            target = rng.choice(["primary", "secondary"])
        else:
            target = "primary" if kind == "primary-cut-from-secondary" else "rs1,rs2"
        faults.append(Fault(kind, round(at, 1), length, target, both_ways))
        at += length + rng.uniform(*GAP_SECONDS)
    return faults


class MetricsLedger:
    """The last value of each counter seen in each run of each node: a restarted
    process starts its counters at zero, so totals add up the runs."""

    def __init__(self):
        self.lock = threading.Lock()
        self.last: dict[tuple[str, int], dict[str, float]] = {}

    def scrape(self, proc: Host) -> None:
        if not proc.running or proc.paused:
            return
        try:
            values = proc.metrics()
        except (OSError, ValueError):
            return
        with self.lock:
            self.last[(proc.name, proc.runs)] = {counter: values.get(counter, 0.0) for counter in COUNTERS}

    def total(self, counter: str) -> int:
        with self.lock:
            return int(sum(values[counter] for values in self.last.values()))


class Nemesis(threading.Thread):
    """Runs the timetable against the cluster, then heals everything."""

    def __init__(self, cluster: ChaosCluster, firewall: Firewall | None, faults: list[Fault], unique: UniqueWrites,
                 ledger: MetricsLedger, log_path, disk_probe_keys: list[str] | None = None):
        super().__init__(name="nemesis", daemon=True)
        self.cluster = cluster
        self.firewall = firewall
        self.faults = faults
        self.unique = unique
        self.ledger = ledger
        self.log_path = log_path
        self.disk_probe_keys = list(disk_probe_keys or [])
        self.abort = threading.Event()
        self.lock = threading.Lock()
        self.active: Fault | None = None
        self.previous: Fault | None = None
        self.changes = 0  # faults begun and healed so far
        self.last_heal = 0.0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.crashes: list[dict] = []
        self.errors: list[str] = []
        self.lines: list[str] = []

    # -- bookkeeping

    def log(self, message: str) -> None:
        offset = time.monotonic() - (self.started_at or time.monotonic())
        line = f"{offset:7.2f}s {message}"
        with self.lock:
            self.lines.append(line)
        with open(self.log_path, "a") as out:
            out.write(line + "\n")
        print(f"[nemesis] {line}", flush=True)

    def avoid(self, settle: float = 1.5) -> set[str] | None:
        """The nodes a reader must keep away from to see every home replica of a key
        answer for itself: those of the active fault and of one healed less than
        `settle` seconds ago. None while a ring server is down, paused or cut off from
        the nodes (then nothing can be read through both)."""
        avoid: set[str] = set()
        now = time.monotonic()
        for fault in (self.active, self.previous):
            if fault is None or (fault is self.previous and now - (fault.healed or now) > settle):
                continue
            if fault.kind in ("kill-ring-server", "pause-ring-server", "ring-servers-cut-from-nodes"):
                return None
            if fault.kind == "split-nodes":
                avoid.update(fault.target.split(","))
            elif fault.kind in NODE_LEVEL:
                avoid.add(fault.target)
        if not all(proc.running and not proc.paused for proc in self.cluster.ring_servers.values()):
            return None
        avoid.update(name for name, proc in self.cluster.nodes.items() if not proc.running or proc.paused)
        return avoid

    def check_crashes(self) -> None:
        """Records processes that exited on their own and starts them again."""
        for proc in self.cluster.processes:
            if proc.crashed():
                status = proc.process.returncode
                self.log(f"CRASH: {proc.name} exited with status {status}; restarting it")
                self.crashes.append({"process": proc.name, "exit_status": status, "run": proc.runs,
                                     "log": str(getattr(proc, "stderr_path", "")), "log_tail": proc.log_tail(1500)})
                try:
                    proc.start()
                except RuntimeError as error:
                    self.errors.append(f"{proc.name} did not restart after its crash: {error}")

    def scrape_all(self) -> None:
        for proc in self.cluster.nodes.values():
            self.ledger.scrape(proc)

    def wait(self, seconds: float) -> None:
        """Sleeps, watching for crashes and collecting metrics now and then."""
        deadline = time.monotonic() + seconds
        while not self.abort.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.check_crashes()
            self.abort.wait(min(0.5, left))

    # -- the run

    def run(self) -> None:
        self.started_at = time.monotonic()
        self.last_heal = self.started_at
        self.log("timetable: " + "; ".join(f"{f.at:.1f}s {f.kind} {f.target} {f.duration:.1f}s" for f in self.faults))
        try:
            for fault in self.faults:
                self.wait(self.started_at + fault.at - time.monotonic())
                if self.abort.is_set():
                    break
                self.scrape_all()
                self.perform(fault)
        except Exception as error:  # noqa: BLE001 - reported, and everything is healed below
            self.errors.append(f"nemesis failed: {error!r}")
            self.log(f"nemesis failed: {error!r}")
        finally:
            self.heal_everything()
            self.finished_at = time.monotonic()
            self.last_heal = self.finished_at
            self.log("all faults healed")

    def perform(self, fault: Fault) -> None:
        fault.started = time.monotonic()
        self.changes += 1
        self.active = fault
        try:
            self.apply(fault)
            self.log(f"fault {fault.describe()} for {fault.duration:.1f} s")
            if fault.kind == "disk-full":
                self.probe_full_disk(fault, fault.started + fault.duration)
            else:
                self.wait(fault.started + fault.duration - time.monotonic())
        except Exception as error:  # noqa: BLE001 - a fault that could not be applied is reported
            fault.errors.append(f"applying: {error!r}")
            self.errors.append(f"{fault.describe()}: {error!r}")
            self.log(f"fault {fault.describe()} failed: {error!r}")
        finally:
            try:
                self.heal(fault)
            except Exception as error:  # noqa: BLE001
                fault.errors.append(f"healing: {error!r}")
                self.errors.append(f"healing {fault.describe()}: {error!r}")
                self.log(f"healing {fault.describe()} failed: {error!r}")
            fault.healed = time.monotonic()
            self.last_heal = fault.healed
            self.previous = fault
            self.active = None
            self.changes += 1
            self.log(f"healed {fault.describe()}")
            self.check_crashes()

    def ring_server(self, role: str) -> str:
        primary = self.cluster.primary() or "rs1"
        if role == "primary":
            return primary
        return next(name for name in self.cluster.ring_servers if name != primary)

    def apply(self, fault: Fault) -> None:
        cluster = self.cluster
        nodes = list(cluster.nodes)
        if fault.kind == "kill-node":
            fault.resolved = fault.target
            self.ledger.scrape(cluster.nodes[fault.target])
            cluster.nodes[fault.target].kill()
        elif fault.kind == "pause-node":
            fault.resolved = fault.target
            cluster.nodes[fault.target].pause()
        elif fault.kind in ("kill-ring-server", "pause-ring-server"):
            fault.resolved = self.ring_server(fault.target)
            proc = cluster.ring_servers[fault.resolved]
            proc.kill() if fault.kind == "kill-ring-server" else proc.pause()
        elif fault.kind == "isolate-node":
            fault.resolved = fault.target
            others = [proc.host for proc in cluster.processes if proc.name != fault.target]
            self.firewall.cut([cluster.address(fault.target)], others, fault.both_ways)
        elif fault.kind == "split-nodes":
            minority = fault.target.split(",")
            fault.resolved = f"{'+'.join(minority)} | {'+'.join(name for name in nodes if name not in minority)}"
            self.firewall.cut([cluster.address(name) for name in minority],
                              [cluster.address(name) for name in nodes if name not in minority], fault.both_ways)
        elif fault.kind == "ring-servers-cut-from-nodes":
            fault.resolved = "rs1+rs2 | nodes"
            # One way: the nodes' packets to the ring servers are dropped.
            self.firewall.cut([cluster.address(name) for name in nodes],
                              [proc.host for proc in cluster.ring_servers.values()], fault.both_ways)
        elif fault.kind == "primary-cut-from-secondary":
            primary = self.ring_server("primary")
            secondary = next(name for name in cluster.ring_servers if name != primary)
            fault.resolved = f"{primary} | {secondary}"
            self.firewall.cut([cluster.address(primary)], [cluster.address(secondary)], fault.both_ways)
        elif fault.kind == "disk-full":
            fault.resolved = fault.target
            fault.notes["filler_bytes"] = cluster.fill_disk(fault.target)
        else:
            raise ValueError(f"unknown fault {fault.kind}")

    def heal(self, fault: Fault) -> None:
        cluster = self.cluster
        if fault.kind in PARTITIONS:
            self.firewall.heal()
        elif fault.kind in ("pause-node", "pause-ring-server"):
            (cluster.nodes.get(fault.resolved) or cluster.ring_servers[fault.resolved]).resume()
        elif fault.kind in ("kill-node", "kill-ring-server"):
            proc = cluster.nodes.get(fault.resolved) or cluster.ring_servers[fault.resolved]
            if not proc.running:
                proc.start()
        elif fault.kind == "disk-full":
            cluster.free_disk(fault.target)
            self.await_disk_recovery(fault)

    def heal_everything(self) -> None:
        """Whatever happened: no rules, nothing paused, everything running, space free."""
        if self.firewall is not None:
            try:
                self.firewall.heal()
            except Exception as error:  # noqa: BLE001
                self.errors.append(f"could not heal the firewall: {error!r}")
        for proc in self.cluster.processes:
            proc.resume()
        if self.cluster.mounted is not None:
            self.cluster.free_disk(self.cluster.tmpfs_node)
        self.check_crashes()
        for proc in self.cluster.processes:
            if not proc.running:
                try:
                    proc.start()
                except RuntimeError as error:
                    self.errors.append(f"{proc.name} did not start: {error}")

    # -- the full disk

    def probe_write(self, node: Host) -> tuple[str, Outcome]:
        """One write through `node` of a key it leads; classified as `ok`, `clean`
        (a 5xx with a JSON error body), `unclean` (any other answer) or `hang`."""
        key = self.disk_probe_keys.pop(0) if self.disk_probe_keys else f"diskprobe-extra-{time.monotonic_ns()}"
        value = checked_value(key)
        invoked = time.monotonic()
        try:
            reply = node.request("PUT", kv("default", key, "w=2"), body=value, timeout=PROBE_TIMEOUT_SECONDS)
        except NotSent as error:
            outcome = Outcome(None, "unsent", invoked, time.monotonic())
            self.unique.record_write(key, value, outcome)
            return f"unsent: {error}", outcome
        except OSError as error:
            outcome = Outcome(None, f"indeterminate: {error!r}", invoked, time.monotonic())
            self.unique.record_write(key, value, outcome)
            return "hang", outcome
        outcome = Outcome(reply, None, invoked, time.monotonic())
        self.unique.record_write(key, value, outcome)
        if reply.status == 204:
            return "ok", outcome
        body = json_body(reply)
        if reply.status >= 500 and reply.content_type == "application/json" and body.get("error") and body.get("message"):
            return f"clean {reply.status} {body['error']}", outcome
        return f"unclean {reply.status} {reply.body[:120]!r}", outcome

    def probe_full_disk(self, fault: Fault, until: float) -> None:
        """Writes through the full node until the fault ends: each must succeed or fail
        cleanly, quickly, and the node must stay up."""
        node = self.cluster.nodes[fault.target]
        answers: dict[str, int] = {}
        while time.monotonic() < until and not self.abort.is_set():
            verdict, outcome = self.probe_write(node)
            answers[verdict] = answers.get(verdict, 0) + 1
            if verdict == "hang" or verdict.startswith("unclean"):
                fault.errors.append(f"a write through the full {fault.target} got {verdict} after "
                                    f"{outcome.completed - outcome.invoked:.1f} s")
            if node.crashed():
                fault.errors.append(f"{fault.target} exited while its disk was full")
                break
            self.abort.wait(0.2)
        fault.notes["writes_while_full"] = answers

    def await_disk_recovery(self, fault: Fault) -> None:
        """Once space is back, writes through the node must succeed again."""
        node = self.cluster.nodes[fault.target]
        freed = time.monotonic()
        attempts: dict[str, int] = {}
        while time.monotonic() - freed < DISK_RECOVERY_SECONDS:
            if not node.running:
                break
            verdict, _ = self.probe_write(node)
            attempts[verdict] = attempts.get(verdict, 0) + 1
            if verdict == "ok":
                fault.notes["writes_succeed_again_after_s"] = round(time.monotonic() - freed, 2)
                fault.notes["writes_after_freeing"] = attempts
                return
            time.sleep(0.2)
        fault.notes["writes_after_freeing"] = attempts
        fault.errors.append(f"writes through {fault.target} did not succeed within {DISK_RECOVERY_SECONDS:.0f} s "
                            f"after its disk was freed: {attempts}")
