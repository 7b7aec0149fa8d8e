"""The cluster dashboard in a real browser: the ring, the nodes, the ring servers, key
lookup, charts, and a node that stops (SIGSTOP, or the dev controls)."""

from __future__ import annotations

import os
import signal
import time

from tests.browser.helpers import NETWORK_UNAVAILABLE


def node_state(page, node: str) -> str | None:
    rows = page.find_all(f'#nodes-body tr[data-node="{node}"]')
    return rows[0].get_attribute("data-state") if rows else None


def test_the_dashboard_shows_the_ring_the_nodes_and_the_primary(cluster, page):
    ring = cluster.api("GET", "/v1/cluster/ring").json()
    view = cluster.dashboard()
    page.open(cluster.app_url("/dashboard"))
    page.wait(lambda: all(node_state(page, f"n{i}") == "up" for i in (1, 2, 3)), message="three nodes up")

    # The ring: one arc per partition, coloured by its first replica, with a legend.
    page.wait(lambda: len(page.find_all("#ring path.partition")) == ring["partitions"], message="the ring drawn")
    owners = page.js("return [...document.querySelectorAll('#ring path.partition')].map(p => p.dataset.owner)")
    assert owners == ring["owners"]
    fills = page.js("return Object.fromEntries([...document.querySelectorAll('#ring path.partition')]"
                    ".map(p => [p.dataset.owner, p.getAttribute('fill')]))")
    assert len(set(fills.values())) == len(set(ring["owners"]))
    legend = page.js("return Object.fromEntries([...document.querySelectorAll('#ring-legend li')]"
                     ".map(li => [li.dataset.node, li.querySelector('.count').textContent]))")
    assert legend == {node: f"{ring['owners'].count(node)} partitions" for node in set(ring["owners"])}

    # Who is primary, its term, the ring epoch, the node numbers.
    assert page.text("#stat-primary") == view["primary"]
    assert page.text("#stat-term") == f"term {view['term']}"
    assert page.text("#stat-epoch") == str(view["ring_epoch"])
    assert page.text("#stat-serving") == "rs1"
    assert page.text("#stat-nodes") == "3 / 3"
    row = page.find('#nodes-body tr[data-node="n1"]')
    n1 = next(node for node in view["nodes"] if node["id"] == "n1")
    assert str(n1["partitions"]) in row.text and n1["http"] in row.text

    # Live charts.
    page.wait(lambda: page.find_all("#chart-rps path.line") and page.find_all("#chart-p99 path.line"), message="charts")

    # Key lookup: the preference list and each replica's version.
    truth = cluster.api("GET", "/app/v1/dashboard/locate/students/s1000001").json()
    page.find("#locate-table").clear()
    page.find("#locate-table").send_keys("students")
    page.find("#locate-key").send_keys("s1000001")
    page.find("#locate-button").click()
    page.wait(lambda: page.find_all("#locate-replicas tbody tr"), message="the lookup")
    assert page.text("#locate-partition") == str(truth["partition"])
    assert page.js("return [...document.querySelectorAll('#locate-preference li')].map(li => li.textContent)") == truth["preference_list"]
    for replica in truth["replicas"]:
        cells = page.find(f'#locate-replicas tbody tr[data-node="{replica["node"]}"]').text
        assert replica["version"] in cells
    assert page.find_all(f'#ring path.partition.is-located[data-partition="{truth["partition"]}"]')

    assert page.find("#dev-card").is_displayed()  # `ringstore dev` turns the controls on
    page.js("window.scrollTo(0, 0)")
    page.finish()


def test_a_stopped_node_shows_down_within_5_s(cluster, page):
    page.open(cluster.app_url("/dashboard"))
    page.wait(lambda: node_state(page, "n3") == "up", message="n3 up")
    pid = cluster.pid_of("n3")
    os.kill(pid, signal.SIGSTOP)
    try:
        stopped = time.monotonic()
        page.wait(lambda: node_state(page, "n3") == "down", timeout=5, message="n3 shown down within 5 s")
        took = time.monotonic() - stopped
        assert page.find('#nodes-body tr[data-node="n3"] .state').text == "down"
        assert page.text("#stat-nodes") == "2 / 3"
        assert "down: n3" in page.text("#stat-nodes-sub")
        assert node_state(page, "n1") == node_state(page, "n2") == "up"
        page.screenshot(f"n3-down-after-{took:.1f}s")
    finally:
        os.kill(pid, signal.SIGCONT)
    page.wait(lambda: node_state(page, "n3") == "up", timeout=15, message="n3 up again after SIGCONT")
    page.finish(NETWORK_UNAVAILABLE)


def test_dev_controls_stop_and_start_a_node(cluster, page):
    page.open(cluster.app_url("/dashboard"))
    page.wait(lambda: node_state(page, "n2") == "up", message="n2 up")
    button = page.find('#nodes-body tr[data-node="n2"] button.dev-node-button')
    assert button.text == "Stop"
    button.click()
    page.wait_text("#feedback", "n2", timeout=5)
    page.wait(lambda: node_state(page, "n2") == "down", timeout=5, message="n2 down within 5 s")
    assert "n2" in page.text("#dev-log")
    page.screenshot("n2-stopped")

    page.wait(lambda: page.find('#nodes-body tr[data-node="n2"] button.dev-node-button').text == "Start", message="a Start button")
    page.find('#nodes-body tr[data-node="n2"] button.dev-node-button').click()
    page.wait(lambda: node_state(page, "n2") == "up", timeout=30, message="n2 up again")
    assert len(page.find_all("#dev-log li")) >= 2
    cluster.wait_until_all_nodes_up()
    page.finish(NETWORK_UNAVAILABLE)
