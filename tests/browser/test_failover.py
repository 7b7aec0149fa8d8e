"""The app and the dashboard outlive the primary ring server: after it is killed, the
same pages (loaded from it) go on working through the other ring server."""

from __future__ import annotations

from tests.browser.helpers import NETWORK_409, NETWORK_REFUSED, NETWORK_UNAVAILABLE, refuses_connections


def test_the_app_keeps_working_after_the_primary_ring_server_is_killed(own_cluster, page):
    cluster = own_cluster
    assert cluster.dashboard()["primary"] == "rs1"
    first, second = "COMP1000", "COMP2000"
    driver = page.driver

    page.open(cluster.app_url())
    page.sign_in("s1000007")
    page.click_subject(first)
    page.wait_note(first, "Enrolled")
    app_tab = driver.current_window_handle

    # A dashboard from rs1 too, in another tab.
    driver.switch_to.new_window("tab")
    page.open(cluster.app_url("/dashboard"))
    page.wait(lambda: page.text("#stat-serving") == "rs1", message="the dashboard on rs1")
    dashboard_tab = driver.current_window_handle

    # Kill rs1 with the dashboard's dev control (POST /app/v1/dev/ring-servers/primary/kill):
    # rs1 confirms, then dies.
    page.find("#kill-primary").click()
    page.wait_text("#feedback", "rs1", timeout=5)
    assert "rs1" in page.text("#dev-log")
    page.wait(lambda: refuses_connections(cluster.rs1), timeout=10, message="rs1 gone")

    # The dashboard follows rs2, which takes over as primary.
    page.wait(lambda: page.text("#stat-serving") == "rs2", timeout=10, message="the dashboard reading from rs2")
    page.wait(lambda: page.text("#stat-primary") == "rs2", timeout=20, message="rs2 shown as primary")
    assert str(cluster.rs2) in page.text("#connection")
    page.screenshot("dashboard-on-rs2")

    # The same app page, loaded from the dead ring server, enrols and drops through rs2.
    driver.switch_to.window(app_tab)
    page.click_subject(second)
    page.wait_note(second, "Enrolled", timeout=30)
    page.click_subject(first)
    page.wait_note(first, "Dropped", timeout=30)
    assert cluster.enrolled_codes("s1000007") == {second}
    assert page.text("#connection") == f"Connected via 127.0.0.1:{cluster.rs2}"
    assert page.find(f'#timetable-grid .tt-event[data-code="{second}"]')
    assert not page.find_all(f'#timetable-grid .tt-event[data-code="{first}"]')
    # Seats keep refreshing through rs2.
    taken = cluster.subject(second)["enrolled"]
    page.wait_text(f'li[data-code="{second}"] .seats-text', f"{cluster.subject(second)['seats_left']} seats left")
    assert taken >= 1

    driver.switch_to.window(dashboard_tab)
    page.collect_console()
    driver.switch_to.window(app_tab)
    # Expected network lines: rs1 refusing connections; a 409 if an answer lost with rs1 is sent again.
    page.finish(NETWORK_REFUSED, NETWORK_UNAVAILABLE, NETWORK_409)
