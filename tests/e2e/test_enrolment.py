"""The enrolment API under concurrency: a student's timetable never holds two
subjects that meet at the same time, even when both enrolments race."""

from __future__ import annotations

import threading

import pytest

from tests.harness import kv_path, run_cli


def minutes(text: str) -> int:
    hours, mins = text.split(":")
    return int(hours) * 60 + int(mins)


def clashes(a: dict, b: dict) -> bool:
    return (a["term"] == b["term"] and a["day"] == b["day"]
            and minutes(a["start"]) < minutes(b["end"]) and minutes(b["start"]) < minutes(a["end"]))


@pytest.fixture
def cluster3(ring_cluster):
    return ring_cluster(3)


def test_two_clashing_enrolments_sent_at_once_cannot_both_succeed(ringstore_bin, cluster3):
    """Thirty students each send two enrolments at the same moment, into two subjects
    that meet at the same time. For each student exactly one succeeds and the other
    is refused as a clash naming the first; the refused subject's roster does not
    keep the student (its seat was given back), and the seat counts match the
    rosters."""
    students = 30
    seeded = run_cli(ringstore_bin, "seed", "--url", cluster3.urls(), "--students", str(students))
    assert seeded.returncode == 0, seeded.stderr.decode()
    rs1, rs2 = cluster3.ring_servers["rs1"], cluster3.ring_servers["rs2"]
    subjects = rs1.request("GET", "/app/v1/subjects").json()["subjects"]
    pairs = [(a, b) for i, a in enumerate(subjects) for b in subjects[i + 1:]
             if clashes(a, b) and min(a["capacity"], b["capacity"]) >= students]
    assert pairs, "the catalogue has no two roomy subjects that clash"
    first, second = pairs[0]

    results: dict[tuple[str, str], object] = {}

    def enrol(server, student: str, code: str, start: threading.Barrier) -> None:
        start.wait()
        results[(student, code)] = server.request("POST", f"/app/v1/students/{student}/enrolments/{code}", timeout=30)

    for number in range(1, students + 1):
        student = f"s{1_000_000 + number}"
        start = threading.Barrier(2)
        threads = [threading.Thread(target=enrol, args=(rs1, student, first["code"], start)),
                   threading.Thread(target=enrol, args=(rs2, student, second["code"], start))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    enrolled = {first["code"]: set(), second["code"]: set()}
    for number in range(1, students + 1):
        student = f"s{1_000_000 + number}"
        replies = {code: results[(student, code)] for code in enrolled}
        statuses = sorted(reply.status for reply in replies.values())
        assert statuses == [200, 409], {code: (reply.status, reply.body) for code, reply in replies.items()}
        winner = next(code for code, reply in replies.items() if reply.status == 200)
        loser = next(code for code, reply in replies.items() if reply.status == 409)
        refusal = replies[loser].json()
        assert refusal["error"] == "timetable_clash" and refusal["clash_with"]["code"] == winner, refusal
        enrolled[winner].add(student)
        timetable = rs1.request("GET", f"/app/v1/students/{student}/enrolments").json()
        assert [subject["code"] for subject in timetable["subjects"]] == [winner], timetable

    for code, expected in enrolled.items():
        reply = rs1.request("GET", kv_path("enrolment", f"roster/{code}"))
        members = set(reply.json()["members"]) if reply.status == 200 else set()
        assert members == expected, (code, members ^ expected)
    seats = {subject["code"]: subject["enrolled"] for subject in rs1.request("GET", "/app/v1/subjects").json()["subjects"]}
    assert seats[first["code"]] == len(enrolled[first["code"]]) and seats[second["code"]] == len(enrolled[second["code"]]), seats
