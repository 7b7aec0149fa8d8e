"""The 9am rush in short form: students enrol through the ring servers while a node
is killed midway; no seat is oversold, no confirmed enrolment is lost, and every
refusal was true (`ringstore bench rush` checks all three and exits 1 otherwise)."""

from __future__ import annotations

import json
import subprocess
import threading

import pytest

from tests.harness import run_cli

STUDENTS = 300


@pytest.fixture
def cluster5(ring_cluster):
    return ring_cluster(5)


def test_the_rush_oversells_nothing_and_loses_nothing_with_a_node_killed(ringstore_bin, cluster5, tmp_path):
    """300 students enrol in 4–6 subjects each, popular subjects first, while n2 is
    SIGKILLed a few seconds in; the rush's own end-of-run checks pass and its report
    shows enrolments, refusals and per-operation latencies."""
    seeded = run_cli(ringstore_bin, "seed", "--url", cluster5.urls(), "--students", str(STUDENTS))
    assert seeded.returncode == 0, seeded.stderr.decode()
    report = tmp_path / "rush.json"
    rush = subprocess.Popen(
        [str(ringstore_bin), "bench", "rush", "--url", cluster5.urls(), "--students", str(STUDENTS),
         "--concurrency", "24", "--json", str(report)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killer = threading.Timer(3.0, cluster5.nodes["n2"].kill)
    killer.start()
    try:
        out, err = rush.communicate(timeout=240)
    finally:
        killer.cancel()
        if rush.poll() is None:
            rush.kill()
    print(out.decode())
    assert rush.returncode == 0, out.decode() + err.decode()
    result = json.loads(report.read_text())
    assert result["passed"] and result["oversold"] == 0 and result["lost"] == 0 and result["untrue_refusals"] == 0, result
    assert result["clashing_timetables"] == 0, result
    assert result["enrolled"] > STUDENTS, result
    assert result["full"] > 0, "no subject filled up: the run did not test the capacity limit"
    assert set(result["operations"]) == {"sign_in", "browse", "enrol", "timetable"}, result


@pytest.fixture
def cluster3(ring_cluster):
    return ring_cluster(3)


def test_an_open_loop_rush_keeps_its_arrival_timetable(ringstore_bin, cluster3, tmp_path):
    """With --arrival-rate, student i starts i/rate seconds in whether or not the
    others are done: 150 students at 50/s take at least 3 s, several are in their
    session at once, and the end-of-run checks hold as in the closed loop."""
    students, rate = 150, 50
    seeded = run_cli(ringstore_bin, "seed", "--url", cluster3.urls(), "--students", str(students))
    assert seeded.returncode == 0, seeded.stderr.decode()
    report = tmp_path / "rush.json"
    result = run_cli(ringstore_bin, "bench", "rush", "--url", cluster3.urls(), "--students", str(students),
                     "--arrival-rate", str(rate), "--json", str(report))
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    assert f"arriving {rate}/s (open loop" in out, out
    summary = json.loads(report.read_text())
    assert summary["passed"] and summary["arrival_rate"] == rate, summary
    assert summary["seconds"] >= (students - 1) / rate, summary
    assert summary["peak_in_session"] >= 2, summary
    assert summary["enrolled"] > students, summary


@pytest.mark.parametrize("args, message", [
    (["--arrival-rate", "0"], "--arrival-rate must be a positive number"),
    (["--arrival-rate=-5"], "--arrival-rate must be a positive number"),
    (["--arrival-rate", "nan"], "--arrival-rate must be a positive number"),
    (["--concurrency", "0"], "must be positive"),
])
def test_the_rush_refuses_bad_options(ringstore_bin, args, message):
    result = run_cli(ringstore_bin, "bench", "rush", "--url", "http://127.0.0.1:9", *args)
    assert result.returncode != 0
    assert message in result.stderr.decode(), result.stderr.decode()
