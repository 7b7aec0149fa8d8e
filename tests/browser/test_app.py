"""The enrolment app in a real browser against a real cluster: signing in, searching,
enrolling and dropping, the refusals (clash, full), the timetable, the keyboard and a phone."""

from __future__ import annotations

import os
import signal
import time

from selenium.webdriver.common.keys import Keys

from tests.browser.helpers import NETWORK_404, NETWORK_409, NETWORK_UNAVAILABLE, clashing_pair


def test_sign_in_refuses_a_bad_id_and_shows_the_name(cluster, page):
    student = cluster.student("s1000001")
    page.open(cluster.app_url())
    page.wait(lambda: page.visible_codes(), message="subjects to load")

    # Not an id: refused in the page, no sign-in.
    field = page.find("#student-id")
    field.send_keys("12345")
    page.find("#sign-in-button").click()
    page.wait_text("#student-id-error", "is not a student ID")
    assert field.get_attribute("aria-invalid") == "true"
    assert not page.find("#profile").is_displayed()
    page.screenshot("bad-id")

    # Well formed but unknown: the server says so.
    field.clear()
    field.send_keys("s1999999")
    page.find("#sign-in-button").click()
    page.wait_text("#student-id-error", "could not find student s1999999")

    # A real student: the name from the API, remembered for the session.
    page.sign_in("S1000001", name=student["name"])  # an upper-case S is forgiven
    assert page.text("#profile-id") == "s1000001"
    assert student["name"] in page.text("#welcome-title")
    assert page.js("return sessionStorage.getItem('ringstore.enrolment.student')") == "s1000001"
    assert page.subject_button("COMP1000").is_displayed()

    page.driver.refresh()
    page.wait(lambda: page.text("#profile-name") == student["name"], message="the student to be remembered")

    page.find("#sign-out").click()
    page.wait(lambda: page.find("#student-id").is_displayed(), message="the sign-in form to come back")
    assert not page.find("#profile").is_displayed()
    assert page.js("return sessionStorage.getItem('ringstore.enrolment.student')") is None
    assert page.js("return document.activeElement.id") == "student-id"
    page.finish(NETWORK_404)


def test_search_filters_as_you_type_and_seats_stay_live(cluster, page):
    subjects = cluster.subjects()
    page.open(cluster.app_url())
    page.wait(lambda: len(page.visible_codes()) == len(subjects), message="every subject to show")
    assert len(subjects) >= 30

    search = page.find("#search")
    search.send_keys("algo")
    expected = [s["code"] for s in subjects if "algo" in (s["code"] + " " + s["title"]).lower()]
    page.wait(lambda: sorted(page.visible_codes()) == sorted(expected), message=f"only {expected}")
    page.screenshot("search-algo")

    search.clear()
    search.send_keys("math")
    expected = [s["code"] for s in subjects if "math" in (s["code"] + " " + s["title"]).lower()]
    page.wait(lambda: sorted(page.visible_codes()) == sorted(expected), message=f"only {expected}")

    search.clear()
    search.send_keys("no such subject")
    page.wait_text("#subjects-empty", "No subjects match")

    search.send_keys(Keys.ESCAPE)  # Escape clears the search
    page.wait(lambda: len(page.visible_codes()) == len(subjects), message="every subject again")

    # Seat numbers are the live ones, and follow enrolments made elsewhere without a click.
    code = "COMP2200"
    before = cluster.subject(code)
    page.wait_text(f'li[data-code="{code}"] .seats-text', f"{before['seats_left']} seats left")
    assert cluster.enrol("s1000290", code).status == 200
    page.wait_text(f'li[data-code="{code}"] .seats-text', f"{before['seats_left'] - 1} seats left", timeout=8)

    assert cluster.enrol("s1000291", code).status == 200
    page.find("#refresh").click()  # and the refresh button fetches them at once
    page.wait_text(f'li[data-code="{code}"] .seats-text', f"{before['seats_left'] - 2} seats left", timeout=4)
    page.finish()


def test_enrol_and_drop(cluster, page):
    code = "COMP2100"
    subject = cluster.subject(code)
    page.open(cluster.app_url())
    page.sign_in("s1000002")

    page.click_subject(code)
    page.wait_note(code, "Enrolled")
    assert f"Enrolled in {code}" in page.feedback()
    assert f"{subject['seats_left'] - 1} seats left" in page.feedback()
    assert page.subject_button(code).text == "Drop"
    assert code in cluster.enrolled_codes("s1000002")
    assert f"{subject['seats_left'] - 1} seats left" in page.text(f'li[data-code="{code}"] .seats-text')
    page.screenshot("enrolled")

    page.click_subject(code)
    page.wait_note(code, "Dropped")
    assert f"Dropped {code}" in page.feedback()
    assert page.subject_button(code).text == "Enrol"
    assert code not in cluster.enrolled_codes("s1000002")
    assert cluster.subject(code)["seats_left"] == subject["seats_left"]
    page.wait(lambda: page.find("#timetable-empty").is_displayed(), message="the timetable to be empty again")
    page.finish()


def test_a_clash_names_the_other_subject(cluster, page):
    first, second = clashing_pair(cluster.subjects())
    page.open(cluster.app_url())
    page.sign_in("s1000003")

    page.click_subject(first["code"])
    page.wait_note(first["code"], "Enrolled")
    page.click_subject(second["code"])
    note = page.wait_note(second["code"], "Clashes with")
    assert first["code"] in note and first["title"] in note
    feedback = page.feedback()
    assert f"{second['code']} clashes with {first['code']} {first['title']}" in feedback
    assert f"{first['day']} {first['start']}–{first['end']}" in feedback
    assert cluster.enrolled_codes("s1000003") == {first["code"]}
    assert page.subject_button(second["code"]).text == "Enrol"
    page.finish(NETWORK_409)


def test_a_full_subject_shows_the_real_numbers(cluster, page):
    subject = min(cluster.subjects(), key=lambda s: (s["capacity"], s["code"]))
    code = subject["code"]
    # Other students take every seat through the API.
    number = 1000100
    while True:
        reply = cluster.enrol(f"s{number}", code)
        if reply.status == 409 and reply.json()["error"] == "subject_full":
            truth = reply.json()
            break
        assert reply.status in (200, 409), reply
        number += 1
        assert number < 1000100 + subject["capacity"] + 5
    assert truth["enrolled"] == truth["capacity"] == subject["capacity"]

    page.open(cluster.app_url())
    page.sign_in("s1000004")
    page.wait_text(f'li[data-code="{code}"] .seats-text', "Full")
    page.click_subject(code)
    note = page.wait_note(code, "Full")
    assert f"{truth['enrolled']} of {truth['capacity']} seats taken" in note
    assert f"is full: {truth['enrolled']} of {truth['capacity']} seats are taken" in page.feedback()
    assert code not in cluster.enrolled_codes("s1000004")
    assert page.find(f'li[data-code="{code}"]').get_attribute("data-seats") == "full"
    page.finish(NETWORK_409)


def test_the_timetable_grid_shows_the_enrolled_subject(cluster, page):
    subject = next(s for s in cluster.subjects() if s["term"] == "T2" and s["day"] == "Wed" and s["seats_left"] > 0)
    code = subject["code"]
    page.open(cluster.app_url())
    page.sign_in("s1000005")
    page.wait(lambda: page.find("#timetable-empty").is_displayed(), message="an empty timetable")

    page.click_subject(code)
    page.wait_note(code, "Enrolled")
    event = page.wait(lambda: page.find(f'#timetable-grid .tt-event[data-code="{code}"]'), message="the subject in the grid")
    assert subject["title"] in event.text and f"{subject['start']}–{subject['end']}" in event.text
    # In the right column, at the right time.
    day = next(cell for cell in page.find_all("#timetable-grid .tt-day") if cell.text == subject["day"])
    box, column = event.rect, day.rect
    assert column["x"] - 1 <= box["x"] + box["width"] / 2 <= column["x"] + column["width"] + 1
    start_hour = int(subject["start"].split(":")[0])
    label = next(cell for cell in page.find_all("#timetable-grid .tt-hour") if cell.text == f"{start_hour:02d}:00")
    assert abs(box["y"] - label.rect["y"]) <= 4
    end_hour = int(subject["end"].split(":")[0])
    end_label = next(cell for cell in page.find_all("#timetable-grid .tt-hour") if cell.text == f"{end_hour:02d}:00")
    assert abs(box["y"] + box["height"] - end_label.rect["y"]) <= 6
    # The term shown is the subject's, and the list (for screen readers and phones) has it too.
    pressed = page.find_all('#timetable-terms button[aria-pressed="true"]')
    assert not pressed or pressed[0].get_attribute("data-term") == subject["term"]
    assert page.js(f"return !!document.querySelector('#timetable-list li[data-code=\"{code}\"]')")
    assert code in page.text("#welcome-summary")
    page.js("document.getElementById('timetable').scrollIntoView()")
    page.finish()


def test_keyboard_only_sign_in_and_enrol(cluster, page):
    code = "MATH2100"
    page.open(cluster.app_url())
    page.wait(lambda: page.visible_codes(), message="subjects to load")

    def tab_to(predicate, limit=30):
        for _ in range(limit):
            page.driver.switch_to.active_element.send_keys(Keys.TAB)
            if predicate(page.driver.switch_to.active_element):
                return page.driver.switch_to.active_element
        raise AssertionError("could not reach the element with Tab")

    field = tab_to(lambda element: element.get_attribute("id") == "student-id")
    field.send_keys("s1000008", Keys.ENTER)
    page.wait(lambda: page.find("#profile").is_displayed(), message="signed in with Enter")
    search = tab_to(lambda element: element.get_attribute("id") == "search")
    search.send_keys(code)
    page.wait(lambda: page.visible_codes() == [code], message=f"only {code}")
    button = tab_to(lambda element: element.get_attribute("data-code") == code and element.tag_name == "button")
    # The focused button shows a focus ring.
    assert button.value_of_css_property("outline-style") != "none"
    button.send_keys(Keys.SPACE)
    page.wait_note(code, "Enrolled")
    assert code in cluster.enrolled_codes("s1000008")
    # The focus stays on the subject's button (now "Drop"), so Space again drops it.
    assert page.js("return document.activeElement.dataset.code") == code
    assert page.driver.switch_to.active_element.text == "Drop"
    assert button.value_of_css_property("outline-style") != "none"
    assert page.find("#feedback").get_attribute("aria-live") == "polite"
    page.finish()


def test_a_phone_sized_window_has_no_horizontal_scrolling(cluster, page):
    assert cluster.enrol("s1000006", "COMP1100").status == 200
    page.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {"width": 375, "height": 812, "deviceScaleFactor": 2, "mobile": True})
    page.open(cluster.app_url())
    page.wait(lambda: page.visible_codes(), message="subjects to load")
    assert page.js("return window.innerWidth") == 375

    def fits() -> bool:
        return page.js("return document.documentElement.scrollWidth <= window.innerWidth"
                       " && document.body.scrollWidth <= window.innerWidth")

    assert fits(), page.js("return document.documentElement.scrollWidth")
    page.screenshot("signed-out")
    page.sign_in("s1000006")
    page.wait(lambda: page.js("return !!document.querySelector('#timetable-list li[data-code=\"COMP1100\"]')"),
              message="the timetable")
    # On a phone the timetable is a list, and it comes before the long subject list.
    assert page.find("#timetable-list").is_displayed()
    assert not page.find("#timetable-grid").is_displayed()
    assert page.find("#timetable").rect["y"] < page.find("#subjects").rect["y"]
    assert fits(), page.js("return document.documentElement.scrollWidth")
    # Nothing sticks out to the right.
    overflow = page.js("""
        return [...document.querySelectorAll('body *')].filter(e => {
          const r = e.getBoundingClientRect();
          return r.width > 0 && r.right > window.innerWidth + 0.5 && getComputedStyle(e).position !== 'fixed'
            && !e.closest('.sr-only');
        }).map(e => e.tagName + '.' + e.className).slice(0, 5)""")
    assert overflow == [], overflow
    button = page.subject_button("COMP1100")
    page.js("arguments[0].scrollIntoView({block: 'center'})", button)
    assert button.rect["x"] + button.rect["width"] <= 375
    assert button.text == "Drop"
    page.js("window.scrollTo(0, 0)")
    time.sleep(0.2)
    page.finish()


def test_the_page_knows_both_ring_servers(cluster, page):
    """Under `ringstore dev` (8080/8081) the other ring server is derived; `?servers=` adds any."""
    page.open(cluster.app_url())
    origins = page.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        import('/assets/js/api.js').then(api => done([
          api.serverOrigins({origin: 'http://127.0.0.1:8080', search: ''}),
          api.serverOrigins({origin: 'http://127.0.0.1:8081', search: ''}),
          api.serverOrigins({origin: 'http://localhost:8080', search: '?servers=127.0.0.1:9000,http://h:1/'}),
          api.serverOrigins({origin: 'http://127.0.0.1:5000', search: ''}),
        ]));""")
    assert origins[0] == ["http://127.0.0.1:8080", "http://127.0.0.1:8081"]
    assert origins[1] == ["http://127.0.0.1:8081", "http://127.0.0.1:8080"]
    assert origins[2] == ["http://localhost:8080", "http://127.0.0.1:9000", "http://h:1", "http://localhost:8081"]
    assert origins[3] == ["http://127.0.0.1:5000"]
    page.finish()


def test_an_unreachable_cluster_is_retried_and_said_so(cluster, page):
    """With two of three nodes frozen no quorum answers: the page says it retries, and
    enrols once the nodes are back."""
    code = "COMP2300"
    page.open(cluster.app_url())
    page.sign_in("s1000009")
    page.wait(lambda: page.find("#timetable-empty").is_displayed(), message="the timetable read")
    frozen = [cluster.pid_of("n2"), cluster.pid_of("n3")]
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        page.click_subject(code)
        page.wait_text("#feedback", "Cluster unreachable — retrying", timeout=20)
        assert page.subject_button(code).get_attribute("aria-busy") == "true"
        assert "retrying" in page.note(code)
        page.screenshot("retrying")
    finally:
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)
    page.wait_note(code, "Enrolled", timeout=40)
    assert f"Enrolled in {code}" in page.feedback()
    assert code in cluster.enrolled_codes("s1000009")
    cluster.wait_until_all_nodes_up()
    page.finish(NETWORK_UNAVAILABLE)


def test_an_unknown_outcome_is_checked_against_the_timetable(cluster, page):
    """A 503 "outcome unknown" (the answer to an enrolment that may have been applied) makes
    the page re-read the timetable and say what it found, without sending the enrolment again.
    The answer is staged in the page: the real enrolment goes through, its reply is replaced."""
    code = "COMP3200"
    page.open(cluster.app_url())
    page.sign_in("s1000010")
    page.wait(lambda: page.find("#timetable-empty").is_displayed(), message="the timetable read")
    page.js("""
        const realFetch = window.fetch.bind(window);
        window.__enrolPosts = 0;
        window.fetch = async (url, init) => {
          const response = await realFetch(url, init);
          if (init && init.method === 'POST' && String(url).includes('/enrolments/')) {
            window.__enrolPosts += 1;
            if (window.__enrolPosts === 1) {
              return new Response(JSON.stringify({error: 'unavailable', outcome: 'unknown',
                message: 'The outcome is unknown.'}), {status: 503, headers: {'Retry-After': '1'}});
            }
          }
          return response;
        };""")
    page.click_subject(code)
    page.wait_text("#feedback", f"Checked your timetable: you are enrolled in {code}", timeout=15)
    page.wait_note(code, "Enrolled")
    assert page.js("return window.__enrolPosts") == 1  # confirmed by reading, not by sending again
    assert page.subject_button(code).text == "Drop"
    assert page.find(f'#timetable-grid .tt-event[data-code="{code}"]')
    assert code in cluster.enrolled_codes("s1000010")
    page.finish()
