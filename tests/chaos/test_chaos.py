"""The chaos suite: a cluster of two ring servers and five nodes, each process on its
own loopback address, runs four workloads through both ring servers while a seeded
nemesis kills, pauses, partitions and fills the disk of its processes. Safety is
asserted (no acknowledged write lost, no wrong value served, no deleted key back,
linearizable counters, no crash); availability per fault is reported. The report
(JSON) goes to the run folder and the terminal; a failing run keeps every log."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import defaultdict

import pytest

from tests.chaos import conftest as chaos_conftest
from tests.chaos.cluster import NODE_HOSTS, ChaosCluster, preference_list
from tests.chaos.firewall import TABLE, Firewall, FirewallError, table_exists, unavailable_reason
from tests.chaos.nemesis import NODE_LEVEL, PARTITIONS, MetricsLedger, Nemesis, timetable
from tests.chaos.workload import (
    COUNTER_TABLE,
    Counters,
    Deletes,
    OpLog,
    SharedWrites,
    UniqueWrites,
    judge_deleted,
    judge_value,
    read_everywhere,
)
from tests.lincheck import Counter, check

CONVERGENCE_BOUND_SECONDS = 10.0
CONVERGENCE_ATTEMPT_SECONDS = 30.0
FINAL_READ_RETRY_SECONDS = 20.0
DISK_TMPFS_MEBIBYTES = 48


# ---------------------------------------------------------------------------
# The firewall on its own


def connects(source: str, destination: tuple[str, int], timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        if source:
            sock.bind((source, 0))
        try:
            sock.connect(destination)
            return True
        except OSError:
            return False


def test_a_partition_drops_only_the_traffic_it_names(needs_root):
    """A one-way cut from 127.0.0.21 to 127.0.0.22 stops connections between them
    and nothing else (127.0.0.21 still reaches 127.0.0.23, clients on 127.0.0.1 reach
    both); healing restores them; rules outside 127.0.0.0/8 are refused; and the
    suite's table is gone once removed."""
    reason = unavailable_reason()
    if reason:
        pytest.fail(f"network partitions are unavailable: {reason}")
    listeners = []
    try:
        for host in ("127.0.0.22", "127.0.0.23"):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.bind((host, 0))
            listener.listen(16)
            listeners.append(listener)
        to22, to23 = (listener.getsockname() for listener in listeners)
        wall = Firewall().install()
        try:
            assert table_exists()
            assert connects("127.0.0.21", to22)
            wall.cut(["127.0.0.21"], ["127.0.0.22"], both_ways=False)
            assert not connects("127.0.0.21", to22)
            assert connects("127.0.0.21", to23)
            assert connects("", to22) and connects("127.0.0.1", to23)
            for outside in (["10.0.0.1"], ["0.0.0.0"], ["::1"]):
                with pytest.raises(FirewallError):
                    wall.cut(["127.0.0.21"], outside)
            listing = wall.listing()
            assert "127.0.0.21" in listing and "10.0.0.1" not in listing, listing
            wall.heal()
            assert connects("127.0.0.21", to22)
        finally:
            wall.remove()
        assert not table_exists(), f"table inet {TABLE} is still there"
    finally:
        for listener in listeners:
            listener.close()


# ---------------------------------------------------------------------------
# The nemesis run


class Verifier(threading.Thread):
    """While the faults go on, reads acknowledged keys with r=3 through both ring
    servers, keeping to keys whose three home replicas the current fault leaves alone
    (so that no fallback answers for one of them), and remembers those served whole;
    after the last heal only the others are waited for."""

    def __init__(self, cluster: ChaosCluster, unique: UniqueWrites, nemesis: Nemesis):
        super().__init__(name="verifier", daemon=True)
        self.cluster, self.unique, self.nemesis = cluster, unique, nemesis
        self.owners = cluster.owners()
        self.homes: dict[str, set[str]] = {}
        self.verified: set[str] = set()
        self.batches = 0
        self.checked = 0
        self.stop = threading.Event()

    def home(self, key: str) -> set[str]:
        if key not in self.homes:
            self.homes[key] = set(preference_list(self.owners, "default", key)[:3])
        return self.homes[key]

    def reachable(self) -> set[str]:
        try:
            primary = self.cluster.primary()
            return {m["id"] for m in self.cluster.view(primary)["members"] if m["reachable"]} if primary else set()
        except (OSError, ValueError, KeyError):
            return set()

    def run(self) -> None:
        while not self.stop.is_set():
            started, changes = time.monotonic(), self.nemesis.changes
            avoid = self.nemesis.avoid()
            if avoid is None:
                self.stop.wait(0.2)
                continue
            unreachable = set(self.cluster.nodes) - self.reachable()
            expected = self.unique.expected()
            with self.unique.lock:
                recent = [key for key in self.unique.ack_order if self.unique.acknowledged[key][1] < started - 0.5]
            batch = [key for key in recent if key in expected and key not in self.verified
                     and not self.home(key) & (avoid | unreachable)][:100]
            if not batch:
                self.stop.wait(0.3)
                continue
            verdicts = read_everywhere(self.cluster, batch, judge_value(expected), threads=4)
            # Results count only if no fault began or ended meanwhile.
            if self.nemesis.changes == changes:
                self.batches += 1
                self.checked += len(batch)
                self.verified.update(key for key, found in verdicts.items() if all(v == "ok" for v in found))


def converge(cluster: ChaosCluster, keys: set[str], expected: dict[str, bytes], deadline: float,
             passes: list) -> tuple[float | None, set[str]]:
    """Reads the keys with r=3 through both ring servers until each was served whole
    by both; returns when the last one was (monotonic) and those never served."""
    pending = set(keys)
    while pending:
        started = time.monotonic()
        verdicts = read_everywhere(cluster, sorted(pending), judge_value(expected))
        pending -= {key for key, found in verdicts.items() if all(v == "ok" for v in found)}
        passes.append({"keys": len(verdicts), "left": len(pending), "seconds": round(time.monotonic() - started, 2)})
        if not pending:
            return time.monotonic(), pending
        if time.monotonic() > deadline:
            return None, pending
        time.sleep(0.2)
    return time.monotonic(), pending


def final_states(cluster: ChaosCluster, keys: list[str], judge, settled: set[str], retry_seconds: float) -> dict[str, list[str]]:
    """Reads keys through both ring servers with r=3, again while some answer neither
    way for sure (an error); returns the last verdicts."""
    verdicts = read_everywhere(cluster, keys, judge)
    deadline = time.monotonic() + retry_seconds
    while time.monotonic() < deadline:
        unsettled = [key for key, found in verdicts.items() if not set(found) <= settled]
        if not unsettled:
            break
        time.sleep(0.5)
        verdicts.update(read_everywhere(cluster, unsettled, judge))
    return verdicts


def in_fault(moment: float, windows: list[tuple[float, float]]) -> bool:
    return any(start <= moment <= end for start, end in windows)


def availability(entries) -> dict:
    by_workload: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for workload, _, _, ok in entries:
        by_workload[workload][0] += ok
        by_workload[workload][1] += 1
    served = sum(ok for ok, _ in by_workload.values())
    total = sum(total for _, total in by_workload.values())
    return {"ops": total, "ok": served, "availability": round(served / total, 3) if total else None,
            "by_workload": {name: round(ok / total, 3) for name, (ok, total) in sorted(by_workload.items())}}


def availability_per_fault(faults, oplog: OpLog, started_at: float) -> list[dict]:
    """For each fault that ran: what it was, when, and the share of operations begun
    while it was active that were served (with its notes and errors, if any)."""
    per_fault = []
    for fault in faults:
        if fault.started is None:
            continue
        entry = {"kind": fault.kind, "target": fault.resolved or fault.target}
        if fault.kind in PARTITIONS:
            entry["both_ways"] = fault.both_ways
        entry.update({"start_s": round(fault.started - started_at, 1), "length_s": round(fault.healed - fault.started, 1),
                      **availability(oplog.between(fault.started, fault.healed))})
        if fault.notes:
            entry["notes"] = fault.notes
        if fault.errors:
            entry["errors"] = fault.errors
        per_fault.append(entry)
    return per_fault


def test_the_store_stays_safe_under_a_seeded_nemesis(ringstore_bin, firewall, chaos_settings, run_folder):
    """Under kills, pauses, partitions and a full disk (one at a time, from a seeded
    timetable), with unique writes, shared keys, deletes and linearizable counters
    running through both ring servers: no acknowledged write is lost or served with a
    wrong value, a deleted key never comes back, the counters' history is
    linearizable, no process crashes, a full disk makes writes fail cleanly and work
    again once space returns, and after the last heal every acknowledged write reads
    from all three replicas through both ring servers within 10 s."""
    seed, duration, folder = chaos_settings.seed, chaos_settings.duration, run_folder
    print(f"chaos run: seed {seed}, {duration:.0f} s of faults, folder {folder}")
    disk_node = random.Random(f"{seed}/disk").choice([f"n{index + 1}" for index in range(len(NODE_HOSTS))])
    # Tombstones are purged two seconds after the purge could first be proven, so
    # that deleted keys go while faults come and go, and must stay gone.
    cluster = ChaosCluster(ringstore_bin, folder, tmpfs_node=disk_node, tmpfs_mebibytes=DISK_TMPFS_MEBIBYTES,
                           node_args=["--tombstone-grace-seconds", "2"])
    report: dict = {"seed": seed, "duration_seconds": duration, "run_folder": str(folder),
                    "reproduce": f"python3 -m pytest tests/chaos -k nemesis --duration {duration:g} --seed {seed}"}
    failures: list[str] = []
    workloads = []
    try:
        cluster.start()
        cluster.create_table(COUNTER_TABLE, {"consistency": "linearizable"})
        if cluster.tmpfs_error:
            report["disk_full_skipped"] = cluster.tmpfs_error
            print(f"the full-disk fault is skipped: {cluster.tmpfs_error}")
        faults = timetable(seed, duration, list(cluster.nodes), disk_node if cluster.mounted else None, partitions=True)
        oplog, ledger = OpLog(), MetricsLedger()
        unique = UniqueWrites(cluster, oplog, seed)
        shared = SharedWrites(cluster, oplog, seed)
        deletes = Deletes(cluster, oplog, seed, unique)
        counters = Counters(cluster, oplog, seed)
        workloads = [unique, shared, deletes, counters]
        probe_keys = cluster.keys_led_by(disk_node, "default", "diskprobe-", 400) if cluster.mounted else []
        nemesis = Nemesis(cluster, firewall, faults, unique, ledger, folder / "nemesis.log", probe_keys)
        verifier = Verifier(cluster, unique, nemesis)
        for workload in workloads:
            workload.start()
        verifier.start()
        nemesis.start()
        nemesis.join(duration + 300)
        assert not nemesis.is_alive(), "the nemesis did not finish within 300 s of its timetable"
        healed_at = nemesis.finished_at
        for workload in workloads:
            workload.finish()
        verifier.stop.set()
        verifier.join(30)

        # Convergence: every acknowledged write on all three replicas, through both ring servers.
        expected = unique.expected()
        started_converging = time.monotonic()
        repair_output = None
        passes: list[dict] = []
        converged_at, pending = converge(cluster, set(expected) - verifier.verified, expected,
                                         time.monotonic() + CONVERGENCE_ATTEMPT_SECONDS, passes)
        if converged_at is None:
            repair_output = cluster.repair()
            converged_at, pending = converge(cluster, pending, expected, time.monotonic() + CONVERGENCE_ATTEMPT_SECONDS, passes)
        convergence = None if converged_at is None else round(converged_at - healed_at, 2)

        # Final states, untimed: everything acknowledged, deleted, or left unknown.
        verdicts = final_states(cluster, sorted(expected), judge_value(expected), {"ok", "missing", "wrong"}, FINAL_READ_RETRY_SECONDS)
        lost = sorted(key for key, found in verdicts.items() if "missing" in found and not {"ok", "wrong"} & set(found))
        wrong = sorted(key for key, found in verdicts.items() if "wrong" in found)
        unreadable = sorted(key for key, found in verdicts.items() if set(found) == {"error"})
        partial = sorted(key for key, found in verdicts.items() if "ok" in found and set(found) != {"ok"})
        deleted = sorted(deletes.deleted)
        after_delete = final_states(cluster, deleted, judge_deleted, {"gone", "back"}, FINAL_READ_RETRY_SECONDS)
        came_back = sorted(key for key, found in after_delete.items() if "back" in found)
        indeterminate = dict(unique.indeterminate)
        appeared_verdicts = read_everywhere(cluster, sorted(indeterminate), judge_value(indeterminate), query="r=2")
        appeared = sorted(key for key, found in appeared_verdicts.items() if "ok" in found)
        wrong += sorted(key for key, found in appeared_verdicts.items() if "wrong" in found)

        finals = counters.final_reads()
        started = time.monotonic()
        lin = check(counters.history, Counter)
        lincheck_seconds = time.monotonic() - started
        nemesis.scrape_all()
        nemesis.check_crashes()

        windows = [(f.started, f.healed) for f in faults if f.started is not None]
        per_fault = availability_per_fault(faults, oplog, nemesis.started_at)
        by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for entry in per_fault:
            by_kind[entry["kind"]][0] += entry["ok"]
            by_kind[entry["kind"]][1] += entry["ops"]
        quiet_entries = [entry for entry in oplog.entries if not in_fault(entry[1], windows)]
        stale_during = [key for key, moment in unique.stale_reads if in_fault(moment, windows)]
        violations = sorted(str(key) for key, verdict in lin.items() if not verdict.ok and not verdict.gave_up)
        gave_up = sorted(str(key) for key, verdict in lin.items() if verdict.gave_up)
        history = counters.history

        report.update({
            "acknowledged_writes_lost": len(lost),
            "lost_examples": lost[:10],
            "wrong_values_served": len(wrong) + len(unique.wrong_reads),
            "wrong_value_examples": (wrong + unique.wrong_reads)[:10],
            "indeterminate_writes": len(indeterminate),
            "indeterminate_writes_that_appeared": len(appeared),
            "unique_writes": {"acknowledged": len(unique.acknowledged), "failed": len(unique.failed),
                              "indeterminate": len(indeterminate), "still_expected": len(expected),
                              "unreadable_at_the_end": len(unreadable), "served_by_one_ring_server_only": len(partial)},
            "stale_reads_during_faults": len(stale_during),
            "stale_reads_total": len(unique.stale_reads),
            "reads_of_acknowledged_keys": unique.reads,
            "convergence_seconds_after_heal": convergence,
            "convergence_keys_checked_after_heal": len(set(expected) - verifier.verified),
            "convergence_keys_verified_between_faults": len(verifier.verified & set(expected)),
            "convergence_passes": passes,
            "verifier_batches_between_faults": verifier.batches,
            "convergence_started_after_heal_s": round(started_converging - healed_at, 2),
            "convergence_repair_used": repair_output is not None,
            "convergence_not_reached_keys": sorted(pending)[:10],
            "hints_replayed": ledger.total("ringstore_hints_delivered_total"),
            "keys_repaired_by_anti_entropy": ledger.total("ringstore_aae_keys_repaired_total"),
            "hints_replayed_plus_keys_repaired": (ledger.total("ringstore_hints_delivered_total")
                                                  + ledger.total("ringstore_aae_keys_repaired_total")),
            "tombstones_purged": ledger.total("ringstore_aae_tombstones_purged_total"),
            "max_siblings_per_key": shared.max_siblings,
            "max_siblings": max(shared.max_siblings.values()),
            "shared_writes": shared.writes,
            "garbled_sibling_values": len(shared.garbled),
            "deletes": {"acknowledged": len(deleted), "indeterminate": len(deletes.indeterminate),
                        "stale_reads_during_faults": sum(in_fault(moment, windows) for _, moment in deletes.stale_reads)},
            "deleted_keys_that_came_back": len(came_back),
            "came_back_examples": came_back[:10],
            "linearizability": {
                "keys": len(lin), "operations": len(history),
                "adds_ok": sum(op.call[0] == "add" and op.completed is not None for op in history),
                "adds_unknown": sum(op.call[0] == "add" and op.completed is None for op in history),
                "reads": sum(op.call[0] == "read" for op in history), "not_applied_retries": counters.not_applied,
                "final_values": finals, "violations": len(violations), "violating_keys": violations,
                "gave_up": gave_up, "check_seconds": round(lincheck_seconds, 2),
                "messages": [verdict.message for key, verdict in lin.items() if str(key) in violations][:3],
            },
            "availability_per_fault": per_fault,
            "availability_by_kind": {kind: round(ok / total, 3) if total else None for kind, (ok, total) in sorted(by_kind.items())},
            "availability_without_faults": availability(quiet_entries)["availability"],
            "node_level_faults": sum(entry["kind"] in NODE_LEVEL for entry in per_fault),
            "crashes": nemesis.crashes,
            "nemesis_errors": nemesis.errors,
            "client_errors": [error for workload in workloads for error in workload.errors][:20],
        })

        if lost:
            failures.append(f"{len(lost)} acknowledged writes lost, e.g. {lost[:5]}")
        if report["wrong_values_served"]:
            failures.append(f"{report['wrong_values_served']} reads served a wrong value, e.g. {report['wrong_value_examples'][:3]}")
        if shared.garbled:
            failures.append(f"{len(shared.garbled)} sibling values were garbled, e.g. {shared.garbled[:3]}")
        if partial:
            failures.append(f"{len(partial)} acknowledged writes read back through one ring server only, e.g. {partial[:5]}")
        if unreadable:
            failures.append(f"{len(unreadable)} acknowledged writes could not be read at all after the run, e.g. {unreadable[:5]}")
        if came_back:
            failures.append(f"{len(came_back)} deleted keys came back, e.g. {came_back[:5]}")
        if violations or gave_up or any(value is None for value in finals.values()):
            failures.append(f"counters: not linearizable on {violations}, checker gave up on {gave_up}, finals {finals}: "
                            f"{report['linearizability']['messages']}")
        if convergence is None:
            failures.append(f"no convergence: {len(pending)} acknowledged writes were not served by all three replicas "
                            f"through both ring servers {2 * CONVERGENCE_ATTEMPT_SECONDS:.0f} s after the last heal "
                            f"(admin repair included), e.g. {sorted(pending)[:5]}")
        elif convergence > CONVERGENCE_BOUND_SECONDS:
            failures.append(f"convergence took {convergence:.1f} s after the last heal (bound {CONVERGENCE_BOUND_SECONDS:.0f} s"
                            f"{', with ringstore admin repair' if repair_output else ''})")
        if nemesis.crashes:
            failures.append(f"processes crashed: {[(c['process'], c['exit_status']) for c in nemesis.crashes]}")
        for fault in faults:
            for error in fault.errors:
                failures.append(f"{fault.describe()}: {error}")
        failures.extend(f"nemesis: {error}" for error in nemesis.errors if not any(error in f for f in failures))
        if report["client_errors"]:
            failures.append(f"client errors: {report['client_errors'][:5]}")
    except BaseException as error:
        failures.append(f"the run stopped: {error!r}")
        raise
    finally:
        for workload in workloads:
            workload.finish(timeout=15)
        cluster.stop()
        report["verdict"] = "fail" if failures else "pass"
        report["failures"] = failures
        (folder / "report.json").write_text(json.dumps(report, indent=2, default=str))
        chaos_conftest.REPORTS.append((f"chaos report (seed {seed}): {folder / 'report.json'}", report))
        print(json.dumps(report, indent=2, default=str))
    assert not failures, (f"chaos run with seed {seed} failed; every process's log is kept in {folder / 'logs'} "
                          f"(report: {folder / 'report.json'}):\n- " + "\n- ".join(failures))
