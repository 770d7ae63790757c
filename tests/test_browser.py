"""A student's path in a real browser: JupyterLab on localhost, driven in headless Chromium.

Opens the release notebook, types the reference solutions into the three
exercise cells, runs all cells, and checks that every visible check reports
success and the figures render.  A screenshot is kept in reports/browser/.
Needs Debian's chromium (`make browser-deps`); outside CI the test is skipped
when it is missing.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from grader.course import NOTEBOOK, ROOT, nbgrader_meta, reference_solutions
from grader.dev.examples import fill, write_examples
from grader.dev.scratch_course import Course

pytestmark = pytest.mark.slow

# No network beyond localhost here: Chromium must not try to reach Google's services.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
VISIBLE_PASSED = "(The hidden tests of this cell run when your notebook is graded.)"

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("UNET_ARTIFACTS", ROOT / "reports" / "browser"))
if not CHROMIUM and not os.environ.get("CI"):
    pytest.skip("no chromium on PATH; `make browser-deps` installs it", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path, small_data):
    """JupyterLab serving a fresh student release; yields its base URL and token."""
    (tmp_path / "course").mkdir()
    course = Course(tmp_path / "course", small_data)
    course.nbgrader("generate_assignment", "unet_segmentation", "--force")
    port, token = free_port(), "browser-test"
    env = {**course.env, "UNET_EPOCHS": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}",
         "--ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={course.release}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=course.release, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert server.poll() is None, "JupyterLab exited during start-up"
                assert time.monotonic() < deadline, "JupyterLab did not answer within 60 s"
                time.sleep(0.5)
        yield base, token, course.release
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_student_fills_in_the_exercises_and_runs_everything(lab):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is required in CI: run `make browser-deps`"
    base, token, release = lab
    nb = nbformat.read(release / f"{NOTEBOOK}.ipynb", as_version=4)
    exercises = {nbgrader_meta(c)["grade_id"]: i for i, c in enumerate(nb.cells) if nbgrader_meta(c).get("solution")}
    code = reference_solutions()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/lab/tree/{NOTEBOOK}.ipynb?token={token}")
            cells = page.locator(".jp-Notebook .jp-Cell")
            page.wait_for_function(
                f"document.querySelectorAll('.jp-Notebook .jp-Cell').length === {len(nb.cells)}", timeout=60_000)
            page.get_by_text("| Idle").wait_for(timeout=60_000)  # the kernel has started
            for exercise, index in exercises.items():
                editor = cells.nth(index).locator(".cm-content")
                editor.click()
                page.keyboard.press("Control+A")
                # insert_text pastes in one go, so the editor adds no indentation or brackets of its own.
                page.keyboard.insert_text(code[exercise])
            page.keyboard.press("Escape")
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_text("Run All Cells", exact=True).click()
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                running = page.locator(".jp-InputPrompt", has_text="[*]").count()
                figures = page.locator(".jp-OutputArea-output img").count()
                if running == 0 and figures >= 5:
                    break
                time.sleep(2)
            page.screenshot(path=str(ARTIFACTS / "student_run.png"))
            predictions = next(i for i, c in enumerate(nb.cells) if c.source.startswith("show_predictions("))
            cells.nth(predictions).screenshot(path=str(ARTIFACTS / "predictions.png"))
            outputs = page.locator(".jp-OutputArea-output").all_text_contents()
        finally:
            browser.close()
    errors = [text[:200] for text in outputs if "Error" in text or "Traceback" in text]
    assert errors == []
    assert sum(VISIBLE_PASSED in text for text in outputs) == 6
    assert figures >= 5, f"only {figures} figures rendered"


def validate_in_browser(page, base: str, token: str, notebook: str, screenshot: str) -> str:
    """Open ``notebook``, press the Validate button in its toolbar and return what the dialog says."""
    page.goto(f"{base}/lab/tree/{notebook}?token={token}")
    page.get_by_text("| Idle").wait_for(timeout=60_000)
    page.get_by_role("tabpanel", name=notebook).get_by_title("Validate Assignment").click()
    dialog = page.locator(".jp-Dialog", has_text="Validation Results")
    dialog.wait_for(timeout=180_000)
    page.screenshot(path=str(ARTIFACTS / screenshot))
    text = dialog.inner_text()
    dialog.get_by_role("button", name="Ok").click()
    return text


def test_the_validate_button_tells_the_truth(lab):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is required in CI: run `make browser-deps`"
    base, token, release = lab
    nb = nbformat.read(release / f"{NOTEBOOK}.ipynb", as_version=4)
    nbformat.write(fill(nb, reference_solutions()), release / "correct.ipynb")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            untouched = validate_in_browser(page, base, token, f"{NOTEBOOK}.ipynb", "validate_untouched.png")
            correct = validate_in_browser(page, base, token, "correct.ipynb", "validate_correct.png")
        finally:
            browser.close()
    for exercise in ("conv_block", "upsampling_block", "unet_model"):
        assert untouched.count(f"{exercise} is not written yet") == 1, untouched
    assert "Success!" not in untouched and "NameError" not in untouched
    assert "Success! Your notebook passes all the tests." in correct, correct


def test_feedback_shows_the_network_beside_the_specification(tmp_path, small_data):
    """A student whose bottleneck pools opens their feedback: the picture marks that block, in words."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is required in CI: run `make browser-deps`"
    course = Course(tmp_path, small_data)
    course.nbgrader("generate_assignment", "unet_segmentation", "--force")
    write_examples(course.root / "submitted", course.release / f"{NOTEBOOK}.ipynb")
    course.nbgrader("autograde", "unet_segmentation", "--force", "--student=bug_unet_model")
    course.nbgrader("generate_feedback", "unet_segmentation", "--force", "--student=bug_unet_model")
    feedback = course.root / "feedback" / "bug_unet_model" / "unet_segmentation" / f"{NOTEBOOK}.html"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(feedback.as_uri())
            figure = page.locator("figure.unet-grader-picture")
            figure.scroll_into_view_if_needed()
            assert figure.is_visible() and figure.locator("svg").bounding_box()["width"] > 600
            figure.screenshot(path=str(ARTIFACTS / "feedback_picture.png"), timeout=120_000)
            text = figure.text_content()
        finally:
            browser.close()
    for words in ("Your unet_model beside the specification's.", "conv_block 5 (bottleneck)", "✗ pools: yes",
                  "spec: pools: no", "missing in yours"):
        assert words in text, words
