"""Fixtures of the browser tests: a seeded `ringstore dev` cluster and a headless Chromium page.

Needs Debian's `chromium` and `chromium-driver` packages and `selenium` from PyPI.
Every process started here is stopped by the fixture that started it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.helpers import CHROMEDRIVER, DevCluster, Page, chrome_binary


@pytest.fixture(scope="package")
def cluster(ringstore_bin, tmp_path_factory) -> DevCluster:
    """One cluster for the browser tests that leave it as they found it (nodes stopped by a
    test are started again); stopped after the last browser test."""
    dev = DevCluster(ringstore_bin, tmp_path_factory.mktemp("dev-cluster")).start()
    yield dev
    dev.stop()


@pytest.fixture
def own_cluster(ringstore_bin, tmp_path) -> DevCluster:
    """A cluster of the test's own, for a test that kills part of it for good."""
    dev = DevCluster(ringstore_bin, tmp_path / "dev-cluster").start()
    yield dev
    dev.stop()


@pytest.fixture
def page(request, tmp_path: Path) -> Page:
    """Headless Chromium at 1280x900; screenshots and the console log land in the test's tmp_path."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is missing: python3 -m pip install -r tests/requirements.txt")
    binary = chrome_binary()
    if binary is None or not Path(CHROMEDRIVER).is_file():
        pytest.fail("Chromium is missing: apt-get install -y chromium chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                     "--disable-gpu", "--no-first-run", "--disable-extensions", "--lang=en-AU"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    view = Page(driver, tmp_path, request.node.name)
    try:
        yield view
    finally:
        if not view.finished:
            view.screenshot("at-failure")
            view.collect_console()
            (tmp_path / f"{view.name}-console.txt").write_text(
                "\n".join(f"[{e.get('level')}] [{e.get('source')}] {e.get('message')}" for e in view.log))
        driver.quit()
