"""A `ringstore dev` cluster and a headless Chromium page, for the browser tests.

The cluster is the real thing: `ringstore dev --nodes 3` (two ring servers, three
storage nodes, all on loopback) serving the app's files straight from
`Sources/RingstoreServer/Web`, loaded with the catalogue and a few hundred students
by `ringstore seed`. The page is Chromium driven by chromedriver; every test keeps
a screenshot and fails on errors in the browser console.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from tests.harness import LOOPBACK, REPO_ROOT, Reply, _forget, _register, children_of, request
from tests.ports import bindable

WEB_ROOT = REPO_ROOT / "Sources" / "RingstoreServer" / "Web"
STUDENTS = 300  # s1000001 … s1000300
NODES = 3
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 15.0

CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"


def chrome_binary() -> str | None:
    """Debian's chromium (or $CHROME_BIN)."""
    for candidate in (os.environ.get("CHROME_BIN"), "/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


# ---------------------------------------------------------------------------
# Processes


def command_line(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return [part.decode(errors="replace") for part in file.read().split(b"\0") if part]
    except OSError:
        return []


def port_is_free(port: int) -> bool:
    return bindable(LOOPBACK, port)


def refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return False
    except OSError:
        return True


class DevCluster:
    """`ringstore dev --nodes 3` on a free port base, seeded; `stop()` ends every process."""

    def __init__(self, binary: Path, folder: Path):
        self.binary = binary
        self.folder = folder
        self.log_path = folder / "dev.out"
        self.process: subprocess.Popen | None = None
        self.base = 0

    # Ports as `ringstore dev` lays them out.
    def ring_port(self, index: int) -> int:
        return self.base + 79 + index

    def node_port(self, index: int) -> int:
        return self.base + 100 + index

    @property
    def rs1(self) -> int:
        return self.ring_port(1)

    @property
    def rs2(self) -> int:
        return self.ring_port(2)

    def origin(self, port: int) -> str:
        return f"http://{LOOPBACK}:{port}"

    def app_url(self, path: str = "/", port: int | None = None) -> str:
        """A page on a ring server, told where the other ring server is (`?servers=`)."""
        servers = ",".join(self.origin(p) for p in (self.rs1, self.rs2))
        return f"{self.origin(port or self.rs1)}{path}?servers={quote(servers, safe='')}"

    def _pick_base(self) -> int:
        for _ in range(50):
            base = random.randrange(20000, 31000, 100)  # below the ephemeral range
            ports = [base + 80, base + 81, base + 1080, base + 1081]
            ports += [base + 100 + i for i in range(1, NODES + 1)] + [base + 1100 + i for i in range(1, NODES + 1)]
            if all(port_is_free(port) for port in ports):
                return base
        raise RuntimeError("no free port base for `ringstore dev`")

    def start(self) -> "DevCluster":
        self.folder.mkdir(parents=True, exist_ok=True)
        self.base = self._pick_base()
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [str(self.binary), "dev", "--nodes", str(NODES), "--data", str(self.folder / "cluster"),
             "--base-port", str(self.base), "--no-seed", "--web-root", str(WEB_ROOT)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        _register(self.process)
        try:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while b"Press Ctrl-C to stop." not in self.log_path.read_bytes():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"`ringstore dev` did not start:\n{self.log_path.read_text(errors='replace')[-4000:]}")
                time.sleep(0.1)
            seed = subprocess.run(
                [str(self.binary), "seed", "--url", f"{self.origin(self.rs1)},{self.origin(self.rs2)}", "--students", str(STUDENTS)],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
            if seed.returncode != 0:
                raise RuntimeError(f"`ringstore seed` failed ({seed.returncode}):\n{seed.stdout}\n{seed.stderr}")
            # Both ring servers answer the app's API before a page opens.
            deadline = time.monotonic() + 30
            for port in (self.rs1, self.rs2):
                while True:
                    try:
                        if request(port, "GET", "/app/v1/subjects").status == 200:
                            break
                    except OSError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the ring server on {port} does not serve /app/v1/subjects")
                    time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def pid_of(self, name: str) -> int:
        """The pid of the child process started as `--id name` (rs1, n3, …)."""
        assert self.process is not None
        for pid in children_of(self.process.pid):
            args = command_line(pid)
            if "--id" in args and args[args.index("--id") + 1] == name:
                return pid
        raise LookupError(f"no running child process {name}")

    def stop(self) -> None:
        """SIGINT (`ringstore dev` stops its children), SIGKILL to anything left."""
        if self.process is None:
            return
        children = set(children_of(self.process.pid))
        for pid in children:  # a node stopped with SIGSTOP must be able to exit
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                children |= set(children_of(self.process.pid))
                self.process.kill()
                self.process.wait()
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _forget(self.process)

    # --- The app's API, straight over HTTP (for setting up and checking) ---

    def api(self, method: str, path: str, port: int | None = None, **kwargs) -> Reply:
        """A request to a ring server (rs1 unless told), falling back to the other one."""
        ports = [port] if port else [self.rs1, self.rs2]
        error: Exception | None = None
        for candidate in ports:
            try:
                reply = request(candidate, method, path, **kwargs)
                if reply.status not in (502, 503, 504) or candidate == ports[-1]:
                    return reply
            except OSError as failure:
                error = failure
        raise error or RuntimeError("no ring server answered")

    def subjects(self) -> list[dict]:
        reply = self.api("GET", "/app/v1/subjects")
        assert reply.status == 200, reply
        return reply.json()["subjects"]

    def subject(self, code: str) -> dict:
        return next(subject for subject in self.subjects() if subject["code"] == code)

    def student(self, student_id: str) -> dict:
        reply = self.api("GET", f"/app/v1/students/{student_id}")
        assert reply.status == 200, reply
        return reply.json()

    def enrolled_codes(self, student_id: str) -> set[str]:
        reply = self.api("GET", f"/app/v1/students/{student_id}/enrolments")
        assert reply.status == 200, reply
        return {subject["code"] for subject in reply.json()["subjects"]}

    def enrol(self, student_id: str, code: str) -> Reply:
        return self.api("POST", f"/app/v1/students/{student_id}/enrolments/{code}")

    def dashboard(self, port: int | None = None) -> dict:
        reply = self.api("GET", "/app/v1/dashboard", port=port)
        assert reply.status == 200, reply
        return reply.json()

    def wait_until_all_nodes_up(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                nodes = self.dashboard()["nodes"]
                if len(nodes) == NODES and all(node["reachable"] for node in nodes):
                    return
            except (OSError, AssertionError):
                pass
            assert time.monotonic() < deadline, f"the nodes did not all come back: {self.dashboard()}"
            time.sleep(0.2)


def minutes(text: str) -> int:
    hours, mins = text.split(":")
    return int(hours) * 60 + int(mins)


def clashing_pair(subjects: list[dict]) -> tuple[dict, dict]:
    """Two subjects of the same term that meet on the same day at overlapping times."""
    for first in subjects:
        for second in subjects:
            if first["code"] < second["code"] and first["term"] == second["term"] and first["day"] == second["day"] \
                    and minutes(first["start"]) < minutes(second["end"]) and minutes(second["start"]) < minutes(first["end"]):
                return first, second
    raise AssertionError("the seeded catalogue has no two subjects that clash")


# ---------------------------------------------------------------------------
# The browser

# Network lines Chromium logs for answers the app expects and handles (they are
# not script errors): a refused or failed answer (409, 404), the cluster being
# unavailable (503), and a dead ring server (connection refused).
NETWORK_409 = r"status of 409"
NETWORK_404 = r"status of 404"
NETWORK_UNAVAILABLE = r"status of 50[234]"
NETWORK_REFUSED = r"net::ERR_(CONNECTION_REFUSED|CONNECTION_RESET|EMPTY_RESPONSE|CONNECTION_CLOSED)"


class Page:
    """One Chromium window: finding things, waiting for them, screenshots and the console."""

    def __init__(self, driver, folder: Path, name: str):
        self.driver = driver
        self.folder = folder
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        self.log: list[dict] = []
        self.finished = False
        self.shots = 0

    # --- navigation and finding ---

    def open(self, url: str) -> "Page":
        self.driver.get(url)
        self.wait(lambda: self.driver.execute_script("return document.readyState") == "complete")
        return self

    def find(self, css: str):
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str):
        from selenium.webdriver.common.by import By
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        elements = self.find_all(css)
        return elements[0].text if elements else ""

    def wait(self, condition, timeout: float = 10.0, message: str = ""):
        """Polls `condition()` (exceptions count as not yet) until it is truthy."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1, ignored_exceptions=(Exception,)).until(
                lambda _: condition())
        except TimeoutException:
            self.screenshot("timeout")
            raise AssertionError(f"timed out after {timeout} s: {message or condition}") from None

    def wait_text(self, css: str, contains: str, timeout: float = 10.0) -> str:
        self.wait(lambda: contains in self.text(css), timeout, f"{css} to contain {contains!r} (has {self.text(css)!r})")
        return self.text(css)

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    # --- the enrolment app ---

    def sign_in(self, student_id: str, name: str | None = None) -> None:
        field = self.find("#student-id")
        field.clear()
        field.send_keys(student_id)
        self.find("#sign-in-button").click()
        self.wait(lambda: self.find("#profile").is_displayed(), 15, f"{student_id} to be signed in")
        if name:
            assert self.text("#profile-name") == name

    def subject_button(self, code: str):
        return self.find(f'li[data-code="{code}"] button.subject-button')

    def click_subject(self, code: str) -> None:
        self.wait(lambda: self.subject_button(code).get_attribute("aria-disabled") != "true", 15,
                  f"the button of {code} to be ready")
        button = self.subject_button(code)
        self.js("arguments[0].scrollIntoView({block: 'center'})", button)
        button.click()

    def note(self, code: str) -> str:
        return self.text(f'li[data-code="{code}"] .subject-note')

    def wait_note(self, code: str, contains: str, timeout: float = 20.0) -> str:
        return self.wait_text(f'li[data-code="{code}"] .subject-note', contains, timeout)

    def feedback(self) -> str:
        return self.text("#feedback")

    def visible_codes(self) -> list[str]:
        return self.js("return [...document.querySelectorAll('#subject-list li.subject')]"
                       ".filter(li => !li.hidden).map(li => li.dataset.code)")

    # --- evidence ---

    def screenshot(self, label: str = "page") -> Path:
        self.shots += 1
        path = self.folder / f"{self.name}-{self.shots:02d}-{label}.png"
        try:
            self.driver.save_screenshot(str(path))
        except Exception:  # a dead browser must not hide the test's own failure
            pass
        return path

    def collect_console(self) -> list[dict]:
        try:
            self.log.extend(self.driver.get_log("browser"))
        except Exception:
            pass
        return self.log

    def console_errors(self, allow: tuple[str, ...] = ()) -> list[dict]:
        """SEVERE console lines, except network lines matching one of `allow`."""
        errors = []
        for entry in self.collect_console():
            if entry.get("level") != "SEVERE":
                continue
            if entry.get("source") == "network" and any(re.search(pattern, entry.get("message", "")) for pattern in allow):
                continue
            errors.append(entry)
        return errors

    def finish(self, *allow: str) -> None:
        """The test's last step: a screenshot, then no errors in the console."""
        self.screenshot("final")
        self.finished = True
        errors = self.console_errors(allow)
        (self.folder / f"{self.name}-console.json").write_text(json.dumps(self.log, indent=2))
        assert not errors, "errors in the browser console:\n" + "\n".join(f"  [{e.get('source')}] {e.get('message')}" for e in errors)
