"""Options and fixtures of the chaos suite.

    python3 -m pytest tests/chaos                          the short form (CI): 75 s of faults
    python3 -m pytest tests/chaos --duration 600 --seed 7  the long form, replaying seed 7

Options are read where given (`pytest tests/chaos …`); when the suite is collected
as part of `pytest tests`, the defaults apply.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.chaos.cluster import unmount_leftovers
from tests.chaos.firewall import Firewall, unavailable_reason

SHORT_DURATION_SECONDS = 75.0
CRASH_CYCLES = 100
DEFAULT_CHAOS_DIR = "/tmp/ringstore-chaos"

# Reports of this session, printed again in the terminal summary.
REPORTS: list[tuple[str, dict]] = []


def pytest_addoption(parser):
    group = parser.getgroup("chaos", "Ringstore chaos suite (tests/chaos)")
    group.addoption("--duration", type=float, default=SHORT_DURATION_SECONDS,
                    help=f"seconds of faults in the nemesis run (default {SHORT_DURATION_SECONDS:.0f}: the short form)")
    group.addoption("--seed", type=int, default=None,
                    help="seed of the nemesis timetable and the clients (default: a new one, printed)")
    group.addoption("--crash-cycles", type=int, default=CRASH_CYCLES,
                    help=f"SIGKILL cycles of the crash-consistency test (default {CRASH_CYCLES})")
    group.addoption("--chaos-dir", default=os.environ.get("RINGSTORE_CHAOS_DIR", DEFAULT_CHAOS_DIR),
                    help=f"where run folders go (default $RINGSTORE_CHAOS_DIR or {DEFAULT_CHAOS_DIR})")


@dataclass(frozen=True)
class ChaosSettings:
    duration: float
    seed: int
    crash_cycles: int
    base: Path


def _option(config, name, default):
    try:
        value = config.getoption(name)
    except ValueError:
        return default
    return default if value is None else value


@pytest.fixture(scope="session")
def chaos_settings(request) -> ChaosSettings:
    """The run's options; a seed is drawn (and printed) when none is given."""
    config = request.config
    seed = _option(config, "--seed", None)
    if seed is None:
        seed = random.SystemRandom().randrange(1, 1_000_000)
    settings = ChaosSettings(
        duration=float(_option(config, "--duration", SHORT_DURATION_SECONDS)), seed=int(seed),
        crash_cycles=int(_option(config, "--crash-cycles", CRASH_CYCLES)),
        base=Path(_option(config, "--chaos-dir", DEFAULT_CHAOS_DIR)))
    print(f"\nchaos: seed {settings.seed}, {settings.duration:.0f} s of faults, run folders under {settings.base}")
    unmount_leftovers(settings.base)
    return settings


@pytest.fixture(scope="session")
def needs_root():
    """Partitions (nftables) and the full disk (tmpfs) need root."""
    if os.geteuid() != 0:
        pytest.skip("the chaos suite needs root: nftables rules and tmpfs mounts")


@pytest.fixture(scope="module")
def firewall(needs_root) -> Firewall:
    """The suite's nftables table, created empty (deleting one a previous run left)
    and always deleted afterwards (here, and at interpreter exit)."""
    reason = unavailable_reason()
    if reason:
        pytest.fail(f"network partitions are unavailable: {reason}")
    wall = Firewall().install()
    try:
        yield wall
    finally:
        wall.remove()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"chaos_{report.when}", report)


@pytest.fixture
def run_folder(request, chaos_settings) -> Path:
    """A folder of the test's own under --chaos-dir for data and logs: kept (and named)
    when the test fails, emptied of data and logs when it passes (reports stay)."""
    name = request.node.name.removeprefix("test_")[:48]
    folder = chaos_settings.base / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}-seed{chaos_settings.seed}"
    folder.mkdir(parents=True)
    yield folder
    outcome = getattr(request.node, "chaos_call", None)
    if outcome is not None and outcome.passed:
        for child in folder.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
    else:
        print(f"\nevery log of this run is kept in {folder}")


def pytest_terminal_summary(terminalreporter):
    for title, report in REPORTS:
        terminalreporter.write_sep("-", title)
        terminalreporter.write_line(json.dumps(report, indent=2))
