"""The course on a real JupyterHub, with real unix accounts (the code `make hub` runs).

One hub serves the whole module: instructor ``teacher``; students alice and
bob (the browser round trip), carol (the other student whose work alice
tries to reach), dave (bad input, Validate's hard cases); eve may log in but
is on no roster.  Needs root (accounts), the hub environment (`make
hub-deps`) and Debian's chromium; outside CI the module is skipped without
them.  Screenshots and the hub's log go to reports/browser/hub/.
"""

from __future__ import annotations

import ast
import html
import os
import pwd
import re
import shlex
import shutil
import sqlite3
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from grader.course import NOTEBOOK, ROOT, reference_solutions
from grader.dev.examples import fill, solutions_for
from hub import accounts
from hub.layout import ASSIGNMENT
from tests.hub_harness import HUB_ENV, running_hub

pytestmark = [pytest.mark.slow, pytest.mark.hub]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("UNET_ARTIFACTS", ROOT / "reports" / "browser")) / "hub"
PROXY = ROOT / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
MISSING = [why for why, missing in [
    ("not root (the hub makes unix accounts)", os.geteuid() != 0),
    ("no hub environment: `make hub-deps`", not (HUB_ENV / "bin" / "jupyterhub").exists()),
    ("no configurable-http-proxy: `make hub-deps`", not PROXY.exists()),
    ("no chromium: `make browser-deps`", CHROMIUM is None),
] if missing]
if MISSING and not os.environ.get("CI"):
    pytest.skip("; ".join(MISSING), allow_module_level=True)

COURSE = "unet-segmentation"
SUCCESS = "Success! Your notebook passes all the tests."
q = shlex.quote
# The hidden checks by the names they are defined with: the sandbox and the data loader, which students'
# servers hold for Validate, have check_ functions of their own that are no secret.
HIDDEN_CHECKS = [f"def {node.name}(" for node in ast.parse((ROOT / "grader" / "engine" / "checks.py").read_text()).body
                 if isinstance(node, ast.FunctionDef) and node.name.startswith("check_")]
HIDDEN = ["BEGIN HIDDEN TESTS", "run_check", "grader.checks", "grader.engine.checks", *HIDDEN_CHECKS]


@pytest.fixture(scope="module")
def hub(small_data):
    assert not MISSING, MISSING
    # Grading on submit has its own tests (test_grade_on_submit.py); here the instructor grades.
    with running_hub(small_data, students=["alice", "bob", "carol", "dave"], visitors=["eve"],
                     artifacts=ARTIFACTS, policy={}) as running:
        yield running


def name(hub, who: str) -> str:
    return hub.layout.account(who)


def release_notebook(hub) -> nbformat.NotebookNode:
    return nbformat.read(hub.layout.exchange / COURSE / "outbound" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", as_version=4)


def write_as(hub, who: str, relative: str, nb: nbformat.NotebookNode) -> Path:
    """Save ``nb`` into a student's home as that student would (through their own server's contents API)."""
    session = hub.login(name(hub, who))
    response = session.server("PUT", f"api/contents/{relative}", json={"type": "notebook", "content": nb})
    assert response.status_code in (200, 201), response.text
    return Path(f"/home/{name(hub, who)}") / relative


@pytest.fixture(scope="module")
def carol_submitted(hub) -> Path:
    """carol fetches and submits from a terminal; the path of her submission in the exchange."""
    carol = name(hub, "carol")
    assert hub.nbgrader_as(carol, "fetch_assignment", ASSIGNMENT).returncode == 0
    folder = Path(f"/home/{carol}/{ASSIGNMENT}")
    nbformat.write(fill(release_notebook(hub), reference_solutions()), folder / f"{NOTEBOOK}.ipynb")
    result = hub.nbgrader_as(carol, "submit", ASSIGNMENT)
    assert result.returncode == 0, result.stdout + result.stderr
    [submission] = (hub.layout.exchange / COURSE / "inbound").glob(f"{carol}+{ASSIGNMENT}+*")
    return submission


# -- the round trip in a real browser ---------------------------------------------------------------------------

BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


def log_in(page, hub, user: str) -> None:
    """Through the hub's login page, as a student does; ends in JupyterLab."""
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", hub.passwords[user])
    page.click("#login_submit")
    page.wait_for_url("**/lab**", timeout=180_000)
    page.get_by_role("menuitem", name="Nbgrader").wait_for(timeout=180_000)


def open_assignments(page) -> None:
    page.get_by_role("menuitem", name="Nbgrader").click()
    page.get_by_text("Assignment List", exact=True).click()
    page.locator("#released_assignments_list_loading").wait_for(state="hidden", timeout=60_000)


def type_solutions(page, nb: nbformat.NotebookNode, code: dict[str, str], timeout: int) -> None:
    """Once the open notebook ``nb`` has all its cells and an idle kernel, type ``code`` into its exercise
    cells and save, as a student does; returns when the save is done."""
    exercises = {c.metadata.nbgrader["grade_id"]: i for i, c in enumerate(nb.cells)
                 if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    page.wait_for_function(
        f"document.querySelectorAll('.jp-Notebook .jp-Cell').length === {len(nb.cells)}", timeout=timeout)
    # Typed into before its kernel is up, the notebook is changed again after it is saved.
    page.get_by_text("| Idle").wait_for(timeout=timeout)
    cells = page.locator(".jp-Notebook .jp-Cell")
    for exercise, index in exercises.items():
        cells.nth(index).locator(".cm-content").click()
        page.keyboard.press("Control+A")
        page.keyboard.insert_text(code[exercise])
    page.keyboard.press("Escape")
    page.keyboard.press("Control+S")
    page.locator(".lm-TabBar-tab.jp-mod-dirty").wait_for(state="detached", timeout=30_000)


def fill_in_and_validate(page, hub, user: str, code: dict[str, str], shot: str) -> str:
    """Open the fetched notebook, type ``code`` into its exercise cells, save, press Validate; the dialog's text."""
    fetched = page.locator("#fetched_assignments_list")
    fetched.get_by_role("button", name=ASSIGNMENT).click()
    fetched.get_by_role("link", name=NOTEBOOK, exact=True).click()
    type_solutions(page, release_notebook(hub), code, timeout=120_000)
    # Validate saves too; pressing it while the save is under way makes Lab ask about a changed file.
    time.sleep(1)
    page.get_by_role("tabpanel", name=f"{NOTEBOOK}.ipynb").get_by_title("Validate Assignment").click()
    dialog = page.locator(".jp-Dialog", has_text="Validat")
    try:
        dialog.get_by_role("button", name="Ok").wait_for(timeout=(hub.layout.validate_seconds + 30) * 1000)
    finally:
        page.screenshot(path=str(ARTIFACTS / shot))
    text = dialog.inner_text()
    dialog.get_by_role("button", name="Ok").click()
    return text


def submit(page, times: int = 1) -> None:
    page.get_by_role("tab", name="Assignments").click()
    for _ in range(times):
        before = page.locator("#submitted_assignments_list .list_item").count()
        page.locator("#fetched_assignments_list .list_item button", has_text="Submit").first.click()
        page.wait_for_function(
            f"document.querySelectorAll('#submitted_assignments_list .list_item').length > {before}",
            timeout=60_000)
        time.sleep(1.1)  # submissions are told apart by their time stamp


def student_work(page, hub, who: str, code: dict[str, str], submissions: int) -> str:
    user = name(hub, who)
    log_in(page, hub, user)
    open_assignments(page)
    assert page.get_by_text("Jupyter news").count() == 0  # the news pop-up is off
    # The companion lab is released beside it: fetch the assignment's row.
    page.locator("#released_assignments_list .list_item", has_text=ASSIGNMENT).get_by_role(
        "button", name="Fetch").click()
    page.locator("#fetched_assignments_list .list_item").first.wait_for(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / f"{who}_fetched.png"))
    report = fill_in_and_validate(page, hub, user, code, f"{who}_validate.png")
    submit(page, submissions)
    page.screenshot(path=str(ARTIFACTS / f"{who}_submitted.png"))
    return report


def fetch_and_open_feedback(page, hub, who: str) -> str:
    log_in(page, hub, name(hub, who))
    open_assignments(page)
    page.locator("#submitted_assignments_list .list_item button", has_text="Fetch Feedback").first.click()
    link = page.locator("#submitted_assignments_list a", has_text="view feedback").first
    link.wait_for(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / f"{who}_feedback_fetched.png"))
    # "view feedback" shows the feedback's folder in the file browser; the student opens the page there.
    link.click()
    page.locator(".jp-DirListing-item", has_text=f"{NOTEBOOK}.html").dblclick(timeout=30_000)
    body = page.frame_locator(".jp-HTMLViewer iframe").locator("body")
    body.get_by_text("Score:").first.wait_for(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / f"{who}_feedback.png"))
    return body.inner_text()


def open_formgrader(page, hub) -> str:
    log_in(page, hub, name(hub, "teacher"))
    page.goto(f"{hub.url}/services/{COURSE}/lab")
    page.get_by_role("menuitem", name="Nbgrader").click(timeout=180_000)
    # The menu's entry: the course service's Lab may restore a Formgrader tab opened before.
    page.locator("#jp-mainmenu-nbgrader").get_by_text("Formgrader", exact=True).click()
    frame = page.frame_locator("iframe").first
    frame.get_by_text("Manage Assignments").first.wait_for(timeout=60_000)
    frame.get_by_text(ASSIGNMENT).first.wait_for(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "teacher_formgrader.png"))
    return frame.locator("body").inner_text()


def test_round_trip_in_the_browser(hub):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            # Each person in a browser context of their own, as on their own computer.
            def page():
                return browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()

            alice_report = student_work(page(), hub, "alice", reference_solutions(), submissions=2)
            bob_report = student_work(page(), hub, "bob", solutions_for("bug_conv_block"), submissions=1)
            alice = name(hub, "alice")
            # The instructor collects, grades (in the sandbox, as nbgrader_config.py says) and returns feedback.
            hub.grader("collect", ASSIGNMENT)
            hub.grader("autograde", ASSIGNMENT)
            hub.grader("generate_feedback", ASSIGNMENT)
            hub.grader("release_feedback", ASSIGNMENT)
            alice_feedback = fetch_and_open_feedback(page(), hub, "alice")
            bob_feedback = fetch_and_open_feedback(page(), hub, "bob")
            formgrader = open_formgrader(page(), hub)
        finally:
            browser.close()
    assert SUCCESS in alice_report, alice_report
    assert SUCCESS not in bob_report
    assert "skip_connection must be the output of the last Conv2D (before pooling)" in " ".join(bob_report.split())
    # alice's second submission is the one collected.
    submissions = sorted((hub.layout.exchange / COURSE / "inbound").glob(f"{alice}+*"))
    assert len(submissions) == 2
    collected = (hub.layout.course / "submitted" / alice / ASSIGNMENT / "timestamp.txt").read_text()
    assert collected == (submissions[-1] / "timestamp.txt").read_text()
    assert "Score: 100.0 / 100.0" in alice_feedback
    assert "Score: 70.0 / 100.0" in bob_feedback and "Score: 0.0 / 15.0" in bob_feedback
    assert ("skip_connection must be the output of the last Conv2D (before pooling), got the output of MaxPooling2D"
            in " ".join(bob_feedback.split()))
    for secret in HIDDEN:
        assert secret not in alice_feedback + bob_feedback, secret
    # The assignment shows as released, with its two submissions (nbgrader's formgrader lists
    # every released assignment it can see in the exchange).
    row = next(line for line in formgrader.splitlines() if line.startswith(ASSIGNMENT))
    assert "released" in row.split() and "2" in row.split(), row


@pytest.fixture(scope="module")
def dave_fetched(hub) -> Path:
    """dave has fetched the assignment in the Assignments tab; his assignment folder."""
    dave = hub.login(name(hub, "dave"))
    assert assignment_action(dave, "fetch")["success"]
    folder = Path(f"/home/{name(hub, 'dave')}/{ASSIGNMENT}")
    assert (folder / f"{NOTEBOOK}.ipynb").exists()
    return folder


# -- students are kept apart ---------------------------------------------------------------------------------

def shell_as(hub, who: str, script: str):
    return hub.as_user(name(hub, who), ["bash", "-c", script])


def test_a_student_cannot_list_or_read_another_students_submission(hub, carol_submitted):
    inbound = hub.layout.exchange / COURSE / "inbound"
    listing = shell_as(hub, "alice", f"ls {inbound}")
    assert listing.returncode != 0 and "Permission denied" in listing.stderr
    # Even knowing the exact, random name (which she cannot list), alice cannot read it.
    peek = shell_as(hub, "alice", f"cat {q(str(carol_submitted / 'unet.ipynb'))}; ls {q(str(carol_submitted))}")
    assert "Permission denied" in peek.stderr and "conv_block" not in peek.stdout
    assert oct(carol_submitted.stat().st_mode & 0o777) == "0o750"
    # carol's home and her fetched copy are hers alone.
    home = shell_as(hub, "alice", f"ls /home/{name(hub, 'carol')}")
    assert home.returncode != 0 and "Permission denied" in home.stderr


def test_in_a_terminal_of_her_server_a_student_is_herself_and_sees_no_one_elses_work(hub, carol_submitted):
    alice = hub.login(name(hub, "alice"))
    course = hub.layout.course
    shown = alice.terminal(
        f"id -un; ls {hub.layout.exchange / COURSE / 'inbound'}; cat {q(str(carol_submitted / 'unet.ipynb'))}; "
        f"cat {course / 'notebooks' / ASSIGNMENT / 'unet.ipynb'}; cat {course / 'gradebook.db'}; "
        f"ls /home/{name(hub, 'carol')}")
    # The terminal's own escape sequences (title, bracketed paste) are not what the commands printed.
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07", "", shown)
    assert name(hub, "alice") in [line.strip() for line in shown.splitlines()], shown
    assert shown.count("Permission denied") == 5, shown
    assert "def conv_block" not in shown and "BEGIN SOLUTION" not in shown


def test_a_student_cannot_read_the_course_the_gradebook_or_the_hidden_tests(hub):
    course = hub.layout.course
    secrets = [course / "notebooks" / ASSIGNMENT / f"{NOTEBOOK}.ipynb", course / "gradebook.db",
               course / "grader" / "engine" / "checks.py", ROOT / "notebooks" / ASSIGNMENT / f"{NOTEBOOK}.ipynb",
               ROOT / "grader" / "engine" / "checks.py", hub.layout.logins, hub.layout.state / "hub.json"]
    for path in secrets:
        assert path.exists(), path
        result = shell_as(hub, "alice", f"cat {path}")
        assert result.returncode != 0 and "Permission denied" in result.stderr, path
    # What every account may read holds no solution and no hidden test.
    assert len(HIDDEN_CHECKS) >= 6, HIDDEN_CHECKS
    readable = "".join(p.read_text(errors="replace") for p in hub.layout.lib.rglob("*.py"))
    readable += "".join(p.read_text(errors="replace") for p in hub.layout.config.rglob("*") if p.is_file())
    for secret in [*HIDDEN, "### BEGIN SOLUTION", "Conv2DTranspose(n_filters"]:
        assert secret not in readable, secret


def test_a_student_cannot_change_the_released_assignment(hub):
    outbound = hub.layout.exchange / COURSE / "outbound" / ASSIGNMENT
    before = (outbound / f"{NOTEBOOK}.ipynb").read_bytes()
    result = shell_as(hub, "alice", f"echo x > {outbound}/{NOTEBOOK}.ipynb; touch {outbound}/extra.py; "
                                    f"rm -f {outbound}/test_utils.py; mkdir {hub.layout.exchange}/other-course")
    assert result.stderr.count("Permission denied") == 4, result.stderr
    assert (outbound / f"{NOTEBOOK}.ipynb").read_bytes() == before and (outbound / "test_utils.py").exists()


def test_students_share_one_read_only_copy_of_the_data(hub):
    alice = hub.login(name(hub, "alice"))
    assert alice.server("GET", "api/status").ok
    [server] = [pid for pid in os.listdir("/proc") if pid.isdigit() and _owner(pid) == name(hub, "alice")
                and b"jupyterhub-singleuser" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    variables = Path(f"/proc/{server}/environ").read_text().split("\0")
    environ = dict(line.split("=", 1) for line in variables if "=" in line)
    assert environ["CARLA_DATA_DIR"] == str(hub.layout.data)
    assert len(list((hub.layout.data / "CameraRGB").glob("*.png"))) == 24
    image = next((hub.layout.data / "CameraRGB").glob("*.png"))
    result = shell_as(hub, "alice", f"head -c 8 {image} | od -c | head -1; touch {hub.layout.data}/x; "
                                    f"echo spoiled >> {image}")
    assert "P   N   G" in result.stdout and result.stderr.count("Permission denied") == 2, result


def _owner(pid: str) -> str | None:
    import pwd

    try:
        return pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name
    except (KeyError, OSError):
        return None


def test_grading_on_the_hub_runs_in_a_control_group_the_grader_account_owns(hub):
    grader = pwd.getpwnam(hub.layout.grader)
    assert hub.layout.grader_cgroups, "set-up handed no control group to the grader account"
    for procs in map(Path, hub.layout.grader_cgroups):
        assert hub.layout.grader_cgroup in procs.parts and procs.parent.stat().st_uid == grader.pw_uid
        assert procs.stat().st_uid == grader.pw_uid
    # The course service (formgrader, and the terminals where instructors run nbgrader) starts in it,
    # as the grader account; so every kernel it grades gets its group, and limits, below it.
    service = subprocess.run(["pgrep", "-u", hub.layout.grader, "-f", "jupyterhub-singleuser"],
                             capture_output=True, text=True).stdout.split()
    assert service, "the course service is not running as the grader account"
    groups = Path(f"/proc/{service[0]}/cgroup").read_text()
    assert groups.count(f"/{hub.layout.grader_cgroup}") >= 1, groups
    # Commands run as the grader account (nbgrader's, by the set-up and these tests) start there too.
    shown = accounts.run_as(hub.layout.grader, ["/bin/sh", "-c", "id -un; cat /proc/self/cgroup"],
                            cwd=hub.layout.course, env={}, cgroups=hub.layout.grader_cgroups).stdout
    assert shown.startswith(f"{hub.layout.grader}\n") and f"/{hub.layout.grader_cgroup}" in shown, shown


def test_a_student_cannot_release_collect_or_autograde(hub):
    alice = name(hub, "alice")
    release = hub.nbgrader_as(alice, "release_assignment", ASSIGNMENT, "--force")
    collect = hub.nbgrader_as(alice, "collect", ASSIGNMENT)
    autograde = hub.nbgrader_as(alice, "autograde", ASSIGNMENT, f"--CourseDirectory.root={hub.layout.course}")
    for result in (release, collect, autograde):
        assert result.returncode != 0, result.stdout + result.stderr
    assert "You don't have read permissions for the directory" in collect.stdout + collect.stderr
    assert not (Path(f"/home/{alice}") / "submitted").exists()


def test_a_student_cannot_submit_as_another_and_a_forgery_is_not_collected(hub, carol_submitted):
    carol, dave = name(hub, "carol"), name(hub, "dave")
    refused = hub.nbgrader_as(carol, "submit", ASSIGNMENT, f"--student={dave}")
    assert refused.returncode != 0
    assert f"you can only submit as yourself, not as '{dave}'" in refused.stdout + refused.stderr
    # From a terminal carol can still make a folder in inbound with dave's name: collect must ignore it.
    inbound = hub.layout.exchange / COURSE / "inbound"
    forged = inbound / f"{dave}+{ASSIGNMENT}+2999-01-01 00:00:00.000000 UTC+forged"
    made = shell_as(hub, "carol", f"mkdir {q(str(forged))} && cp -r /home/{carol}/{ASSIGNMENT}/* {q(str(forged))}/ "
                                  f"&& chmod -R a+rX {q(str(forged))} && echo made")
    assert "made" in made.stdout, made.stderr
    collect = hub.grader("collect", ASSIGNMENT, f"--student={dave}")
    assert f"claims to be {dave}'s submission but belongs to {carol}" in collect.stdout + collect.stderr
    assert not (hub.layout.course / "submitted" / dave).exists()


def test_through_the_hub_a_student_reaches_only_their_own_server(hub):
    alice = hub.login(name(hub, "alice"))
    carol = name(hub, "carol")
    token = {"Authorization": f"token {alice.api_token()}"}
    # The hub API: no list of users or groups, no other user, no joining the instructors.
    assert alice.get("/hub/api/users", headers=token).status_code == 403
    assert alice.get(f"/hub/api/users/{carol}", headers=token).status_code in (403, 404)
    assert alice.get("/hub/api/groups", headers=token).status_code == 403
    join = alice.http.post(f"{hub.url}/hub/api/groups/formgrade-{COURSE}/users", headers=token,
                           json={"users": [name(hub, "alice")]}, timeout=30)
    assert join.status_code in (403, 404)
    # Another student's server, and the course service (formgrader), are closed to her.
    other = alice.get(f"/user/{carol}/lab")
    assert other.status_code in (403, 404) or "/user/" + carol not in other.url
    formgrader = alice.get(f"/services/{COURSE}/formgrader")
    assert formgrader.status_code == 403 or "Manage Assignments" not in formgrader.text
    assert "Manage Assignments" not in formgrader.text
    # Her file browser ends at her home folder.
    # (Sent as is: an HTTP client would remove the dot segments itself.)
    up = "%2E%2E"
    for path in [up, f"{up}/{carol}", f"{up}/{up}{hub.layout.course}", f"{up}/{up}{hub.layout.exchange}"]:
        status, body = alice.raw_get(f"/user/{name(hub, 'alice')}/api/contents/{path}")
        # Refused, or sent back to her server's own API root: never a listing.
        assert status in (400, 403, 404) or (status == 302 and body == f"/user/{name(hub, 'alice')}/api"), (
            path, status, body[:300])
        assert carol not in body and "gradebook" not in body


# -- Validate on the hub: an answer within the limit, never a hang, a 502 or broken JSON -------------------------

def _variant(exercise: str, old: str, new: str) -> dict[str, str]:
    code = reference_solutions()
    assert code[exercise].count(old) == 1
    return {**code, exercise: code[exercise].replace(old, new)}


VALIDATE_CASES = {
    "loop": _variant("conv_block", "def conv_block(", "while True:\n    pass\n\n\ndef conv_block("),
    "asks_for_input": _variant("conv_block", "    if dropout_prob > 0:",
                               "    input('rate? ')\n    if dropout_prob > 0:"),
    "kernel_dies": _variant("upsampling_block", "    return conv", "    return conv\n\n\nimport os\nos._exit(3)"),
}


def test_validate_answers_each_hard_case_with_a_message(hub, dave_fetched):
    dave = hub.login(name(hub, "dave"))
    release = release_notebook(hub)
    answers, slowest_answer = {}, 0.0
    log_before = len(hub.log_text())
    for case, code in VALIDATE_CASES.items():
        path = f"{ASSIGNMENT}/{case}.ipynb"  # next to the modules the notebook imports
        write_as(hub, "dave", path, fill(release, code))
        started = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(dave.server, "POST", "assignments/validate", data={"path": path}, timeout=400)
            # Meanwhile the student's server goes on answering (nbgrader's own handler blocks it).
            while not running.done():
                asked = time.monotonic()
                assert dave.server("GET", "api/contents").ok
                slowest_answer = max(slowest_answer, time.monotonic() - asked)
                time.sleep(2)
            response = running.result()
        answers[case] = (response.status_code, response.json(), time.monotonic() - started)
    assert slowest_answer < 5, slowest_answer
    for case, (status, answer, seconds) in answers.items():
        assert status == 200 and seconds < hub.layout.validate_seconds + 20, (case, status, seconds)
        assert answer["success"] is True, (case, answer)
        assert answer["value"]["failed"], (case, answer)
    # Validate wraps messages at 80 columns; compare them as running text.
    errors = {case: " ".join(" ".join(cell["raw_error"] for cell in answer["value"]["failed"]).split())
              for case, (_, answer, _) in answers.items()}
    # The endless cell is interrupted at the cell limit, so the function after it was never defined.
    assert errors["loop"].startswith("Check failed: conv_block is not defined."), errors["loop"]
    assert "conv_block asks for input()" in errors["asks_for_input"], errors["asks_for_input"]
    assert "the Python kernel stopped while running the cell that begins `def upsampling_block(" in errors[
        "kernel_dies"], errors["kernel_dies"]
    # One Validate child answered the three presses, its kernels forked from the one template it started.
    said = [line for line in hub.log_text()[log_before:].splitlines() if "Validate (pid " in line]
    assert len({line.split("Validate (pid ")[1].split(")")[0] for line in said}) == 1, said
    assert sum("Kernel template started" in line for line in said) == 1, said
    assert not any("Kernel template not used" in line for line in said), said


def test_validate_of_a_missing_notebook_says_so(hub):
    dave = hub.login(name(hub, "dave"))
    answer = dave.server("POST", "assignments/validate", data={"path": "gone.ipynb"}).json()
    assert answer == {"success": False, "value": "There is no notebook at gone.ipynb: was it renamed or deleted?"}


# -- bad input: a clear message, nothing lost ---------------------------------------------------------------------

def assignment_action(session, action: str):
    response = session.server("POST", f"assignments/{action}", data={"course_id": COURSE, "assignment_id": ASSIGNMENT})
    assert response.status_code == 200, response.text
    return response.json()


def test_fetching_twice_keeps_the_students_work(hub, dave_fetched):
    dave_name = name(hub, "dave")
    dave = hub.login(dave_name)
    notebook = Path(f"/home/{dave_name}/{ASSIGNMENT}/{NOTEBOOK}.ipynb")
    work = fill(release_notebook(hub), solutions_for("bug_conv_block"))
    write_as(hub, "dave", f"{ASSIGNMENT}/{NOTEBOOK}.ipynb", work)
    before = notebook.read_bytes()
    again = hub.nbgrader_as(dave_name, "fetch_assignment", ASSIGNMENT)
    assert again.returncode != 0
    assert "You already have a copy of the assignment in this directory: unet_segmentation" in again.stderr
    assert assignment_action(dave, "fetch")["success"]  # the tab just lists again
    assert notebook.read_bytes() == before


@pytest.mark.parametrize("mistake", ["renamed", "deleted"])
def test_submitting_without_the_notebook_is_refused_with_the_reason(hub, dave_fetched, mistake):
    dave_name = name(hub, "dave")
    dave = hub.login(dave_name)
    folder = dave_fetched
    inbound = hub.layout.exchange / COURSE / "inbound"
    submissions_before = sorted(inbound.glob(f"{dave_name}+*"))
    notebook = folder / f"{NOTEBOOK}.ipynb"
    kept = notebook.read_bytes()
    moved = folder / "unet_final.ipynb"
    shell_as(hub, "dave", f"mv {notebook} {moved}" if mistake == "renamed" else f"mv {notebook} /home/{dave_name}/")
    try:
        answer = assignment_action(dave, "submit")
        assert answer["success"] is False
        assert answer["value"].startswith(
            "Assignment unet_segmentation not submitted. There are missing notebooks"), answer
        assert "unet.ipynb: MISSING" in answer["value"] and "Traceback" not in answer["value"]
        if mistake == "renamed":
            assert "unet_final.ipynb: EXTRA" in answer["value"]
        assert sorted(inbound.glob(f"{dave_name}+*")) == submissions_before
    finally:
        away = moved if mistake == "renamed" else Path(f"/home/{dave_name}/{NOTEBOOK}.ipynb")
        shell_as(hub, "dave", f"mv {away} {notebook}")
    assert notebook.read_bytes() == kept


def test_a_submission_changed_after_it_was_made_is_not_collected(hub, dave_fetched):
    """A student owns their submission's folder: a link put there later must not bring in the solutions."""
    dave_name = name(hub, "dave")
    inbound = hub.layout.exchange / COURSE / "inbound"
    before = set(inbound.glob(f"{dave_name}+*"))
    assert assignment_action(hub.login(dave_name), "submit")["success"]
    [folder] = set(inbound.glob(f"{dave_name}+*")) - before
    source = hub.layout.course / "notebooks" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    linked = shell_as(hub, "dave", f"ln -sf {q(str(source))} {q(str(folder / (NOTEBOOK + '.ipynb')))} && echo linked")
    assert "linked" in linked.stdout, linked.stderr
    collect = hub.grader("collect", ASSIGNMENT, f"--student={dave_name}")
    assert f"since {NOTEBOOK}.ipynb is a link." in collect.stdout + collect.stderr
    collected = hub.layout.course / "submitted" / dave_name / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    assert not collected.exists() or "BEGIN SOLUTION" not in collected.read_text()


def test_a_student_not_on_the_roster_is_told_so(hub):
    eve_name = name(hub, "eve")
    eve = hub.login(eve_name)
    courses = eve.server("GET", "courses").json()
    assert courses["success"] is False
    assert courses["value"].startswith(f"You ({eve_name}) are not on the roster of any course on this hub")
    # From a terminal of her server (which holds her hub token), nbgrader says the same.
    fetch = hub.nbgrader_as(eve_name, "fetch_assignment", ASSIGNMENT, token=eve.api_token())
    assert fetch.returncode != 0 and "You do not have access to this course." in fetch.stderr
    assert not Path(f"/home/{eve_name}/{ASSIGNMENT}").exists()


def test_a_late_submission_is_kept_and_marked_late(hub, carol_submitted):
    carol = name(hub, "carol")
    hub.grader("db", "assignment", "add", ASSIGNMENT, "--duedate=2000-01-01 00:00:00 UTC")
    hub.grader("collect", ASSIGNMENT, f"--student={carol}", "--update")
    timestamp = (hub.layout.course / "submitted" / carol / ASSIGNMENT / "timestamp.txt").read_text()
    assert timestamp > "2000"
    hub.grader("autograde", ASSIGNMENT, f"--student={carol}", "--force")
    export = hub.grader("export", "--to=grades_late.csv")
    assert export.returncode == 0
    rows = (hub.layout.course / "grades_late.csv").read_text().splitlines()
    header = rows[0].split(",")
    [row] = [r.split(",") for r in rows[1:] if r.split(",")[header.index("student_id")] == carol]
    assert float(row[header.index("score")]) == 100.0
    assert row[header.index("duedate")].startswith("2000-01-01")
    assert float(row[header.index("late_submission_penalty")]) == 0.0
    assert row[header.index("timestamp")] > row[header.index("duedate")]


def feedback_text(path: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", path.read_text()))


def test_stopping_and_starting_again_loses_nothing(hub, small_data, carol_submitted):
    """Runs last: the hub goes down and comes back as `make hub` brings it up, on the same state folder."""
    carol = name(hub, "carol")
    passwords = dict(hub.passwords)
    before = hub.grader("export", "--to=before.csv")
    hub.restart(small_data)
    assert hub.passwords == passwords
    hub.grader("export", "--to=after.csv")
    assert before.returncode == 0
    assert (hub.layout.course / "after.csv").read_text() == (hub.layout.course / "before.csv").read_text()
    assert carol_submitted.exists()
    session = hub.login(carol)  # the same password still works, and her server starts again
    listing = session.server("GET", "assignments", params={"course_id": COURSE}).json()
    assert listing["success"], listing
    statuses = {a["status"] for a in listing["value"]}
    assert "submitted" in statuses and "fetched" in statuses, listing
    assert (Path(f"/home/{carol}") / ASSIGNMENT / f"{NOTEBOOK}.ipynb").exists()


# -- every page under a content security policy (issue #30) ------------------------------------------------------

WATCH = """document.addEventListener("securitypolicyviolation",
  e => (window.__csp = window.__csp || []).push(e.violatedDirective + " " + (e.sample || e.blockedURI)));"""
INJECTED = "<script>window.__pwned = 1</script><img src=x onerror='window.__pwned = 2'>"


def visit(page, url: str, seen: dict) -> None:
    """Open ``url``; note its policy, the violations the page reported, and whether an injected script ran."""
    response = page.goto(url)
    page.wait_for_load_state("networkidle")
    seen[url] = {"status": response.status if response else None,
                 "csp": response.headers.get("content-security-policy", "") if response else "",
                 "violations": page.evaluate("window.__csp || []"), "pwned": page.evaluate("window.__pwned || 0")}


def inject_into(page, pattern: str, keep_policy: bool = True) -> None:
    """Answer requests matching ``pattern`` with the server's own response plus ``INJECTED`` in its body, as a
    value put unescaped into a template would be; without ``keep_policy`` the response loses its policy."""
    def handle(route):
        response = route.fetch()
        headers = {k: v for k, v in response.headers.items()
                   if keep_policy or k.lower() != "content-security-policy"}
        route.fulfill(response=response, headers=headers, body=response.text().replace("<body", INJECTED + "<body", 1))
    page.route(pattern, handle)


def watched_page(browser, refused: list[str]):
    """A page in a context of its own that notes every policy violation (also of pages it leaves, and frames)."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.add_init_script(WATCH)
    page.on("console", lambda message: refused.append(f"{page.url}: {message.text[:200]}")
            if "Content Security Policy" in message.text else None)
    return page


def test_hub_and_lab_pages_run_only_their_own_scripts(hub):
    """Login, the spawn and its pending page, home (stop, start), token, an error page, a student's Lab, the
    course service's Lab and formgrader all work under the policies, and refuse a script put into the page."""
    from playwright.sync_api import sync_playwright

    eve = name(hub, "eve")
    seen: dict[str, dict] = {}
    refused: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = watched_page(browser, refused)
            visit(page, f"{hub.url}/hub/login", seen)
            log_in(page, hub, eve)  # the login form, the spawn (and its pending page on a slow start), JupyterLab
            for path in ("/hub/home", "/hub/token", "/hub/no-such-page"):
                visit(page, hub.url + path, seen)
            # The token page's script asks the API for a token; home's stops the server, and Start spawns it again.
            page.goto(f"{hub.url}/hub/token")
            page.get_by_role("button", name="Request new API token").click()
            page.locator("#token-area").wait_for(state="visible", timeout=30_000)
            page.goto(f"{hub.url}/hub/home")
            page.locator("#stop").click()
            page.locator("#stop").wait_for(state="hidden", timeout=120_000)
            page.locator("#start").click()
            page.wait_for_url("**/lab**", timeout=180_000)
            page.get_by_role("menuitem", name="Nbgrader").wait_for(timeout=180_000)
            page.screenshot(path=str(ARTIFACTS / "pages_lab.png"))
            # The instructor: the course service's Lab, and formgrader in its frame.
            teacher = watched_page(browser, refused)
            formgrader = open_formgrader(teacher, hub)
            frames = [frame.evaluate("window.__csp || []") for frame in teacher.frames if "formgrader" in frame.url]
            before_injection = list(refused)
            # A script put into a page's HTML runs nowhere: the hub's home, eve's Lab.
            inject_into(page, "**/hub/home")
            inject_into(page, f"**/user/{eve}/lab")
            page.goto(f"{hub.url}/hub/home")
            page.wait_for_load_state("networkidle")
            injected = {"home": page.evaluate("window.__pwned || 0"), "home_seen": page.evaluate("window.__csp || []")}
            page.goto(f"{hub.url}/user/{eve}/lab")
            page.get_by_role("menuitem", name="Nbgrader").wait_for(timeout=180_000)
            injected |= {"lab": page.evaluate("window.__pwned || 0"), "lab_seen": page.evaluate("window.__csp || []")}
            # The control: the same injection without the policy runs (so the test would notice).
            control = browser.new_context().new_page()
            inject_into(control, "**/hub/login", keep_policy=False)
            control.goto(f"{hub.url}/hub/login")
            control.wait_for_load_state("networkidle")
            injected["control"] = control.evaluate("window.__pwned || 0")
        finally:
            browser.close()
    for where, what in seen.items():
        print(f"{where}: {what['status']} {what['violations'][:5]}")
    print(f"refused before the injection: {before_injection}\ninjected: {injected}\nformgrader's frame: {frames}")
    assert before_injection == [] and all(what["violations"] == [] for what in seen.values())
    assert frames == [[]], frames  # formgrader's own (nonce) policy, in the course service's Lab
    for path in ("/hub/login", "/hub/home", "/hub/token", "/hub/no-such-page"):
        csp = seen[hub.url + path]["csp"]
        assert "script-src 'self' 'nonce-" in csp and "unsafe-inline" not in csp.split("style-src")[0], (path, csp)
    assert seen[hub.url + "/hub/no-such-page"]["status"] == 404
    assert injected["control"] in (1, 2)
    assert injected["home"] == 0 and injected["lab"] == 0, injected
    for where in ("home_seen", "lab_seen"):
        assert any(v.startswith("script-src-elem") for v in injected[where]), injected
        assert any(v.startswith("script-src-attr") for v in injected[where]), injected
    assert ASSIGNMENT in formgrader  # formgrader's own scripts filled its table


def test_the_companion_lab_is_released_and_a_submission_of_it_is_refused(hub):
    dave = name(hub, "dave")
    fetched = hub.nbgrader_as(dave, "fetch_assignment", "unet_lab")
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    notebook = Path(f"/home/{dave}/unet_lab/skip_connections.ipynb")
    text = notebook.read_text()
    assert "BEGIN SOLUTION" not in text and "skip" in text  # released as students get it: no model answers
    submitted = hub.nbgrader_as(dave, "submit", "unet_lab")
    assert submitted.returncode != 0
    assert "unet_lab is practice that is never graded, so there is nothing to submit" in submitted.stdout + \
        submitted.stderr
    assert not list((hub.layout.exchange / COURSE / "inbound").glob(f"{dave}+unet_lab+*"))
    with sqlite3.connect(hub.layout.course / "gradebook.db") as gradebook:
        assert ("unet_lab",) not in gradebook.execute("select name from assignment").fetchall()
