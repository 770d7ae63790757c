"""Formgrader with names an attacker chose: escaped everywhere, no script but formgrader's own (issue #30).

The unit tests render nbgrader's own templates through ``unet_hub.formgrader_guard``.
The browser test (``hub``-marked: Chromium, a real Jupyter Server with
formgrader, as the course service runs it) fills a gradebook with a student
whose every name field is script, and whose notebook's outputs are script
too, opens every formgrader page as the instructor and checks that none of
it ran, that formgrader's own scripts did (the student table fills itself),
and, with the guard switched off, that the same pages do run the script:
the test would notice.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from hub.student import formgrader_guard as guard

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__import__("nbgrader.server_extensions.formgrader.handlers",
                            fromlist=["template_path"]).template_path)


def mark(what: str) -> str:
    """JavaScript that records ``what`` ran, for the browser test to find."""
    return f"(window.__pwned=(window.__pwned||[])).push('{what}')"


FIRST = f"<script>{mark('first_name')}</script>"
LAST = f'"><img src=x onerror="{mark("last_name")}">'
EMAIL = f"<svg onload=\"{mark('email')}\"></svg>@x"


def test_each_formgrader_template_keeps_no_inline_handler_and_all_its_scripts_get_the_nonce():
    sources = [p for p in TEMPLATES.rglob("*") if p.suffix in (".tpl", ".j2")]
    assert len(sources) >= 10
    for path in sources:
        hardened = guard.harden_template(path.read_text())
        assert not guard.HANDLER_ATTRIBUTE.search(hardened), path
        tags = re.findall(r"<script\b[^>]*>", hardened, flags=re.IGNORECASE)
        assert all('nonce="{{ csp_nonce() }}"' in tag for tag in tags), (path, tags)


def test_the_templates_escape_names_and_carry_the_nonce():
    environment = guard.guarded_environment(str(TEMPLATES))
    token = guard._nonce.set("N0NCE")
    try:
        page = environment.get_template("manage_students_notebook_submissions.tpl").render(
            base_url="/services/c", student_id=FIRST, assignment_id=LAST, url_prefix="", mathjax_url="")
    finally:
        guard._nonce.reset(token)
    assert FIRST not in page and "&lt;script&gt;" in page and LAST not in page
    assert all('nonce="N0NCE"' in tag for tag in re.findall(r"<script\b[^>]*>", page))


def test_the_policy_refuses_inline_script_without_the_nonce():
    policy = guard.policy("abc")
    assert "script-src 'self' 'nonce-abc';" in policy and "unsafe-inline" not in policy.split("style-src")[0]
    assert "object-src 'none'" in policy and "frame-ancestors 'self'" in policy


# -- in Chromium ---------------------------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("UNET_ARTIFACTS", ROOT / "reports" / "browser")) / "formgrader_guard"
ASSIGNMENT, NOTEBOOK, STUDENT = "a1", "nb", "lti0123456789"


def hostile_course(root: Path) -> int:
    """A course folder with one student whose names are script, graded, with script in the outputs; the id."""
    from nbgrader.api import Gradebook

    (root / "nbgrader_config.py").write_text(f"c = get_config()\nc.CourseDirectory.root = {str(root)!r}\n")
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("answer = 42", metadata={"nbgrader": {
        "grade": True, "solution": True, "locked": False, "points": 10, "grade_id": "answer",
        "schema_version": 3, "task": False}})
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "text/html": f"<script>{mark('output_script')}</script><img src=x onerror=\"{mark('output_img')}\">",
        "text/plain": "out"})]
    notebook.cells = [cell]
    for folder in (root / "source" / ASSIGNMENT, root / "autograded" / STUDENT / ASSIGNMENT):
        folder.mkdir(parents=True)
        nbformat.write(notebook, folder / f"{NOTEBOOK}.ipynb")
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        gb.add_assignment(ASSIGNMENT)
        gb.add_notebook(NOTEBOOK, ASSIGNMENT)
        gb.add_grade_cell("answer", NOTEBOOK, ASSIGNMENT, max_score=10, cell_type="code")
        gb.add_solution_cell("answer", NOTEBOOK, ASSIGNMENT)
        gb.add_student(STUDENT, first_name=FIRST, last_name=LAST, email=EMAIL, lms_user_id=FIRST)
        gb.add_submission(ASSIGNMENT, STUDENT)
        return gb.find_submission_notebook(NOTEBOOK, ASSIGNMENT, STUDENT).id


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_formgrader(root: Path, guarded: bool, lib: Path) -> tuple[subprocess.Popen, str]:
    port, token = free_port(), "t0ken"
    extensions = {"nbgrader.server_extensions.formgrader": True, "unet_hub.formgrader_guard": guarded}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(lib), str(ROOT)]), "JUPYTER_CONFIG_DIR": str(root / ".j"),
           "JUPYTER_RUNTIME_DIR": str(root / ".rt")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1",
         f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
         f"--ServerApp.jpserver_extensions={extensions!r}",
         # As the course service: the frame-ancestors header jupyterhub_config gives it (hub/provision.py).
         """--ServerApp.tornado_settings={"headers": {"Content-Security-Policy": "frame-ancestors 'self'"}}"""],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            return server, f"{base}/formgrader"
        except OSError:
            if server.poll() is not None:
                raise AssertionError(server.stdout.read() if server.stdout else "the server died") from None
            time.sleep(0.3)
    server.kill()
    raise AssertionError("formgrader did not start")


PAGES = ["", "/gradebook", f"/gradebook/{ASSIGNMENT}", f"/gradebook/{ASSIGNMENT}/{NOTEBOOK}",
         "/manage_students", f"/manage_students/{STUDENT}", f"/manage_students/{STUDENT}/{ASSIGNMENT}",
         f"/manage_submissions/{ASSIGNMENT}", "/submissions/{submission}/"]
WATCH = """document.addEventListener("securitypolicyviolation",
  e => (window.__csp = window.__csp || []).push(e.violatedDirective + " " + (e.sample || e.blockedURI)));"""


def visit_all(base: str, submission: str, shots: Path | None) -> dict[str, dict]:
    from playwright.sync_api import sync_playwright

    seen: dict[str, dict] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.add_init_script(WATCH)
        page.goto(f"{base}?token=t0ken")
        for path in PAGES:
            path = path.format(submission=submission)
            response = page.goto(base + path)
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(300)
            seen[path] = {"status": response.status if response else None,
                          "csp": response.headers.get("content-security-policy", "") if response else "",
                          "pwned": page.evaluate("window.__pwned || []"), "violations": page.evaluate(
                              "window.__csp || []"), "text": page.inner_text("body")}
            if shots is not None:
                name = (path.strip("/").replace("/", "_") or "index") + ".png"
                page.screenshot(path=str(shots / name), full_page=True)
        # Formgrader's click handlers, moved from onclick attributes to a listener, still work.
        page.goto(base + "/manage_students")
        page.wait_for_load_state("networkidle")
        page.get_by_text("Add new student...").click()
        try:
            page.locator(".modal-dialog").first.wait_for(state="visible", timeout=10_000)
            seen["modal"] = {"shown": True}
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            seen["modal"] = {"shown": False, "why": str(error)[:300], "violations": page.evaluate("window.__csp || []")}
        api = page.request.get(f"{base}/api/students")
        seen["api"] = {"status": api.status, "type": api.headers.get("content-type", ""),
                       "nosniff": api.headers.get("x-content-type-options", ""), "body": api.text()}
        browser.close()
    return seen


@pytest.mark.hub
def test_no_script_from_a_name_or_an_output_runs_in_formgrader(tmp_path, monkeypatch):
    assert CHROMIUM, "chromium is required: run `make browser-deps`"
    # nbgrader makes a gradebook with the environment's alembic command.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "unet_hub").symlink_to(ROOT / "hub" / "student")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    results = {}
    for guarded in (False, True):
        course = tmp_path / f"course-{guarded}"
        course.mkdir()
        submission = hostile_course(course)
        server, base = serve_formgrader(course, guarded, lib)
        try:
            results[guarded] = visit_all(base, submission, ARTIFACTS if guarded else None)
        finally:
            server.terminate()
            server.wait(30)
    unguarded, guarded_pages = results[False], results[True]
    # The control: without the guard the script in the names (and outputs) runs, so the test would notice.
    ran = {what for page in unguarded.values() for what in page.get("pwned", [])}
    print(f"\nwithout the guard, script ran from: {sorted(ran)}")
    assert ran, "the hostile names ran nowhere without the guard: the test could not notice them running"
    for path, page in guarded_pages.items():
        if path in ("api", "modal"):
            continue
        print(f"{path or '/'}: {page['status']}, blocked: {page['violations'][:4]}")
        assert page["status"] == 200, path
        assert page["pwned"] == [], (path, page["pwned"])
        assert "'nonce-" in page["csp"] and "unsafe-inline" not in page["csp"].split("style-src")[0], path
    # Formgrader's own scripts ran: the student table and the submission page filled themselves.
    assert FIRST in guarded_pages["/manage_students"]["text"] or "<script>" in guarded_pages["/manage_students"][
        "text"]
    assert guarded_pages["modal"]["shown"], guarded_pages["modal"]
    api = guarded_pages["api"]
    assert api["status"] == 200 and api["type"].startswith("application/json") and api["nosniff"] == "nosniff"
    assert unguarded["api"]["type"].startswith("text/html")  # what the guard changes
