"""Grading on submit on a real JupyterHub: the browser, the policies, exactly once through kill -9, batch equality.

One hub for the module (the code `make hub` runs), with the grading service
it manages.  ann submits in a browser and watches her grading; ben submits
from a terminal (the batch comparison); cat meets the policies and the cap;
ivy swaps the source notebook into her submissions while they are graded;
dan, eva, fay and gus make a burst during which a worker and then the
service are killed with SIGKILL.  Needs what tests/test_hub.py needs.
"""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest
import requests

from grader.course import NOTEBOOK, ROOT, reference_solutions
from grader.dev.examples import fill, solutions_for
from hub.grade_on_submit.pipeline import feedback_copy
from hub.grade_on_submit.queue import FAILED, GRADED, GRADING, QUEUED, Queue, open_engine
from hub.grade_on_submit.settings import QUEUE_FILE
from hub.layout import ASSIGNMENT
from tests.hub_harness import running_hub, write_policy
from tests.test_hub import (
    BROWSER_ARGS,
    CHROMIUM,
    COURSE,
    MISSING,
    assignment_action,
    log_in,
    open_assignments,
    release_notebook,
    submit,
    write_as,
)

pytestmark = [pytest.mark.slow, pytest.mark.hub]
if MISSING and not os.environ.get("CI"):
    pytest.skip("; ".join(MISSING), allow_module_level=True)

ARTIFACTS = Path(os.environ.get("UNET_ARTIFACTS", ROOT / "reports" / "browser")) / "grade_on_submit"
ON = {ASSIGNMENT: {"grade_on_submit": True, "show": "feedback", "per_hour": 0}}
LEASE = 10.0


@pytest.fixture(scope="module")
def hub(small_data):
    assert not MISSING, MISSING
    with running_hub(small_data, students=["ann", "ben", "cat", "dan", "eva", "fay", "gus", "ivy"], visitors=["eve"],
                     artifacts=ARTIFACTS, policy=ON, grading_lease=LEASE) as running:
        yield running


def name(hub, who: str) -> str:
    return hub.layout.account(who)


def queue(hub) -> Queue:
    """The service's queue, read as root."""
    return Queue(open_engine(f"sqlite:///{hub.layout.course / QUEUE_FILE}"))


def rows_of(hub, who: str):
    return [r for r in queue(hub).all() if r.student == name(hub, who)]


def wait_until_final(hub, who: str, count: int, timeout: float = 240):
    """``who``'s submissions once ``count`` of them are there and none is queued or being graded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = rows_of(hub, who)
        if len(rows) >= count and all(r.state not in (QUEUED, GRADING) for r in rows):
            return rows
        time.sleep(0.5)
    raise AssertionError(f"{who}'s submissions did not finish: {rows_of(hub, who)}\n{hub.log_text()[-5000:]}")


def prepare(hub, who: str, code: dict[str, str]) -> Path:
    """``who`` fetches the assignment and writes ``code`` into it; the notebook's path."""
    user = name(hub, who)
    assert hub.nbgrader_as(user, "fetch_assignment", ASSIGNMENT).returncode == 0
    notebook = Path(f"/home/{user}/{ASSIGNMENT}/{NOTEBOOK}.ipynb")
    _write_as_user(hub, user, notebook, nbformat.writes(fill(release_notebook(hub), code)))
    return notebook


def _write_as_user(hub, user: str, path: Path, text: str) -> None:
    """Put ``text`` at ``path`` as ``user`` (who then owns it, as if she had saved it)."""
    staged = Path(f"/tmp/{user}-{os.getpid()}.ipynb")
    staged.write_text(text)
    staged.chmod(0o644)
    try:
        assert hub.as_user(user, ["cp", str(staged), str(path)]).returncode == 0
    finally:
        staged.unlink()


def submit_from_terminal(hub, who: str) -> None:
    result = hub.nbgrader_as(name(hub, who), "submit", ASSIGNMENT)
    assert result.returncode == 0, result.stdout + result.stderr
    time.sleep(1.1)  # submissions are told apart by their time stamp


def service_url(hub, path: str = "") -> str:
    return f"{hub.url}/services/{hub.layout.grading_service}/{path}"


def api(hub, token: str, path: str) -> requests.Response:
    return requests.get(service_url(hub, path), headers={"Authorization": f"token {token}"}, timeout=30,
                        allow_redirects=False)


def service_pid(hub) -> int:
    return next(p for p, cmd in processes() if cmd.endswith("-m\0hub.grade_on_submit\0") and "as_account" not in cmd)


def processes() -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((int(entry.name), (entry / "cmdline").read_text()))
            except OSError:
                pass
    return found


# -- the student, in the browser ----------------------------------------------------------------------------------

def test_a_student_sees_her_submission_graded_within_seconds_and_only_hers(hub):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    prepare(hub, "ben", solutions_for("bug_conv_block"))
    submit_from_terminal(hub, "ben")
    ann = hub.login(name(hub, "ann"))
    assert assignment_action(ann, "fetch")["success"]
    write_as(hub, "ann", f"{ASSIGNMENT}/{NOTEBOOK}.ipynb", fill(release_notebook(hub), reference_solutions()))
    seen: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            log_in(page, hub, name(hub, "ann"))
            open_assignments(page)
            submitted = time.monotonic()
            submit(page)
            page.goto(service_url(hub))
            state = page.locator("#submissions tr").first
            deadline = time.monotonic() + 180
            while "graded" not in seen and time.monotonic() < deadline:
                label = state.get_attribute("data-state") if state.count() else None
                if label and (not seen or seen[-1] != label):
                    seen.append(label)
                time.sleep(0.2)
            to_feedback = time.monotonic() - submitted
            page.screenshot(path=str(ARTIFACTS / "ann_graded.png"))
            page.reload()
            page.locator("#submissions tr[data-state=graded]").wait_for(timeout=30_000)
            rows = page.locator("#submissions tr")
            assert rows.count() == 1  # ben's submission is not hers
            assert rows.first.locator(".score").inner_text() == "100 / 100"
            rows.first.get_by_role("link", name="feedback").click()
            page.get_by_text("Score: 100.0 / 100.0").first.wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "ann_feedback.png"))
            feedback = page.locator("body").inner_text()
        finally:
            browser.close()
    assert seen[-1] == "graded" and set(seen) <= {"queued", "grading", "graded"}, seen
    assert seen == sorted(seen, key=["queued", "grading", "graded"].index), seen
    assert "BEGIN HIDDEN TESTS" not in feedback and "run_check" not in feedback
    print(f"ann: from Submit to her grade on the page in {to_feedback:.1f} s; states seen {seen}")


def test_the_workers_kernels_are_forked_from_templates_of_the_grader_account(hub):
    """The grader account is a normal user in control groups delegated to it: its templates start and are used."""
    import pwd

    log = hub.log_text()
    started = [int(pid) for pid in re.findall(r"Kernel template started in [0-9.]+ s \(pid (\d+)\)", log)]
    assert len(started) >= hub.layout.grading_workers, log[-3000:]
    assert "Kernel template not used" not in log
    grader_uid = pwd.getpwnam(hub.layout.grader).pw_uid
    alive = [pid for pid in started if Path(f"/proc/{pid}").exists()]
    assert alive, "no template of the grader account is running"
    for pid in alive:
        status = Path(f"/proc/{pid}/status").read_text()
        uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
        # Inside its user namespace the template may be uid 0; the machine sees the grader account.
        assert {int(u) for u in uids} == {grader_uid}, status
        groups = Path(f"/proc/{pid}/cgroup").read_text()
        assert hub.layout.grader_cgroup in groups, groups


def normalised_scores(hub) -> dict[tuple[str, str], float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{hub.layout.course / 'gradebook.db'}") as gb:
        notebook = gb.find_notebook(NOTEBOOK, ASSIGNMENT)
        return {(s.student.id, g.name): g.score for s in notebook.submissions for g in s.grades}


def test_the_gradebook_and_feedback_are_those_a_batch_autograde_gives(hub):
    ann, ben = name(hub, "ann"), name(hub, "ben")
    [ben_row] = wait_until_final(hub, "ben", 1)
    [ann_row] = wait_until_final(hub, "ann", 1)
    assert (ann_row.state, ann_row.score) == (GRADED, 100.0)
    assert ben_row.state == GRADED and ben_row.score < 100.0
    on_submit = normalised_scores(hub)
    feedback = {s: (hub.layout.course / "feedback" / s / ASSIGNMENT / f"{NOTEBOOK}.html").read_text()
                for s in (ann, ben)}
    released = sorted((hub.layout.exchange / COURSE / "feedback").glob("*.html"))
    assert len(released) == 2  # each graded submission's feedback, released once
    for command in (["collect", "--update"], ["autograde", "--force"], ["generate_feedback", "--force"]):
        result = hub.grader(command[0], ASSIGNMENT, *command[1:])
        assert result.returncode == 0, result.stderr[-3000:]
    assert normalised_scores(hub) == on_submit
    assert {k[0] for k in on_submit} >= {ann, ben}
    for student, page in feedback.items():
        assert (hub.layout.course / "feedback" / student / ASSIGNMENT / f"{NOTEBOOK}.html").read_text() == page


# -- the instructor's policies ----------------------------------------------------------------------------------

def test_the_policies_what_students_see_the_cap_and_failures(hub):
    write_policy(hub.layout, {ASSIGNMENT: {"grade_on_submit": True, "show": "score", "per_hour": 1}})
    time.sleep(1)
    cat_name = name(hub, "cat")
    cat = hub.login(cat_name)
    token = cat.api_token()
    # A submission that cannot be trusted (made by hand, dated ten minutes before it was made) fails with
    # the reason, and does not use up her grading for the hour.
    notebook = prepare(hub, "cat", reference_solutions())
    stamp = datetime.fromtimestamp(time.time() - 600, UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    folder = hub.layout.inbound / f"{cat_name}+{ASSIGNMENT}+{stamp}+byhand"
    made = hub.as_user(cat_name, ["sh", "-c", f"mkdir '{folder}' && cp '{notebook}' '{folder}/' && "
                                              f"printf %s '{stamp}' > '{folder}/timestamp.txt' && "
                                              f"printf %s '{'ab' * 64}' > '{folder}/submission_secret.txt'"])
    assert made.returncode == 0, made.stderr
    [broken] = wait_until_final(hub, "cat", 1)
    assert broken.state == FAILED and "was changed after the submission was made" in broken.reason, broken
    submit_from_terminal(hub, "cat")
    graded = next(r for r in wait_until_final(hub, "cat", 2) if r.id != broken.id)
    assert graded.state == GRADED and graded.score == 100.0
    mine = api(hub, token, "api/mine").json()
    assert [m["id"] for m in mine] == [graded.id, broken.id]
    assert mine[0]["score"] == 100.0 and mine[0]["feedback"] is False
    assert mine[0]["note"] == "Graded. The feedback will be shown when your instructor releases it."
    assert api(hub, token, f"feedback/{graded.id}").status_code == 404
    # Over the cap: kept, queued for when the hour allows, and she is told when.
    submit_from_terminal(hub, "cat")
    time.sleep(2)
    waiting = api(hub, token, "api/mine").json()[0]
    assert waiting["state"] == "queued" and "will be graded at" in waiting["note"], waiting
    # After the due date she sees her score and feedback, and the feedback is released to the exchange.
    before = set((hub.layout.exchange / COURSE / "feedback").glob("*.html"))
    hub.grader("db", "assignment", "add", ASSIGNMENT, "--duedate=2000-01-01 00:00:00 UTC")
    deadline = time.monotonic() + 60
    while not api(hub, token, "api/mine").json()[1]["feedback"] and time.monotonic() < deadline:
        time.sleep(1)
    page = api(hub, token, f"feedback/{graded.id}")
    assert page.status_code == 200 and "Score: 100.0 / 100.0" in page.text
    policy = page.headers["Content-Security-Policy"]
    assert policy.startswith("sandbox;") and "script-src 'none'" in policy  # shown as a document, no script runs
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    while len(set((hub.layout.exchange / COURSE / "feedback").glob("*.html")) - before) < 1:
        assert time.monotonic() < deadline + 45, "the held feedback was not released after the due date"
        time.sleep(1)
    # Nothing of another student's: not her row, not her feedback, not the queue.
    ann_row = rows_of(hub, "ann")[0]
    assert api(hub, token, f"feedback/{ann_row.id}").status_code == 404
    assert api(hub, token, "queue").status_code == 403
    write_policy(hub.layout, ON)


def test_the_instructor_sees_the_queue_and_a_visitor_sees_nothing(hub):
    teacher = hub.login(name(hub, "teacher"))
    listing = api(hub, teacher.api_token(), "api/queue").json()
    students = {row["student"] for row in listing["submissions"]}
    assert {name(hub, "ann"), name(hub, "ben"), name(hub, "cat")} <= students
    failed = [row for row in listing["submissions"] if row["state"] == FAILED]
    assert failed and all(row["reason"] for row in failed)
    page = api(hub, teacher.api_token(), "queue")
    assert page.status_code == 200 and "could not be graded" in page.text
    eve = hub.login(name(hub, "eve"))
    assert api(hub, eve.api_token(), "api/mine").status_code == 403


def test_the_services_hub_token_has_no_scopes_to_speak_of(hub):
    environ = Path(f"/proc/{service_pid(hub)}/environ").read_bytes().split(b"\0")
    token = next(v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"JUPYTERHUB_API_TOKEN="))
    api_url = f"http://127.0.0.1:{hub.layout.hub_api_port}/hub/api"
    me = requests.get(f"{api_url}/user", headers={"Authorization": f"token {token}"}, timeout=30).json()
    assert me["kind"] == "service" and set(me["scopes"]) <= {f"read:services!service={hub.layout.grading_service}"}
    users = requests.get(f"{api_url}/users", headers={"Authorization": f"token {token}"}, timeout=30)
    assert users.status_code == 403
    # The workers, which run the students' notebooks, do not get it.
    for pid, cmd in processes():
        if "hub.grade_on_submit.worker" in cmd:
            assert b"JUPYTERHUB_API_TOKEN" not in Path(f"/proc/{pid}/environ").read_bytes()


# -- exactly once, through kill -9 --------------------------------------------------------------------------------

# ivy's side, with her own tools only: she submits, reads where her submission goes from nbgrader's own
# log ("Destination: ..."), puts a link to the source notebook in a folder of hers in inbound (the same
# file system), and swaps it with her notebook, in a loop or whenever the service touches her folder.
SWAP_IN_THE_SOURCE = r"""
import ctypes, os, subprocess, sys, time
python, inbound, source, mode, seconds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
submit = subprocess.Popen([python, "-m", "nbgrader", "submit", "unet_segmentation"], stderr=subprocess.PIPE, text=True)
folder = next(line.split("Destination: ", 1)[1].strip() for line in submit.stderr if "Destination: " in line)
decoys = folder.rsplit("+", 3)[0] + "+decoys+" + str(time.time())
os.mkdir(decoys)
os.symlink(source, os.path.join(decoys, "unet.ipynb"))
libc = ctypes.CDLL(None, use_errno=True)
mine, theirs = os.path.join(folder, "unet.ipynb").encode(), os.path.join(decoys, "unet.ipynb").encode()
swap = lambda: libc.syscall(316, -100, mine, -100, theirs, 2)  # renameat2(RENAME_EXCHANGE)
while not os.path.exists(os.path.join(folder, "unet.ipynb")):
    time.sleep(0.001)
swaps, deadline = 0, time.monotonic() + seconds
if mode == "loop":
    while time.monotonic() < deadline:
        swaps += swap() == 0
else:
    fd = libc.inotify_init1(0x800)
    libc.inotify_add_watch(fd, folder.encode(), 0x1 | 0x20)  # something in it was read or opened
    while time.monotonic() < deadline:
        try:
            os.read(fd, 65536)
            swaps += swap() == 0
        except BlockingIOError:
            time.sleep(0.0005)
submit.wait()
print(swaps)
"""


def test_swapping_in_the_source_notebook_while_grading_on_submit_never_grades_it(hub):
    ivy = name(hub, "ivy")
    prepare(hub, "ivy", solutions_for("bug_conv_block"))  # her own work: 70 points
    source = hub.layout.course / "source" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    rounds = ["watch", "loop"] * 3
    for number, mode in enumerate(rounds, start=1):
        attack = hub.as_user(ivy, ["python3", "-I", "-c", SWAP_IN_THE_SOURCE, str(hub.layout.env / "bin" / "python"),
                                   str(hub.layout.inbound), str(source), mode, "15"], timeout=120)
        assert attack.returncode == 0 and int(attack.stdout.split()[-1]) > 0, attack.stdout + attack.stderr
        time.sleep(1.1)  # submissions are told apart by their time stamp
        rows = wait_until_final(hub, "ivy", number)
    outcomes = [(r.state, r.score, r.reason) for r in rows]
    print("\nivy's swapped submissions:", outcomes)
    for row in rows:
        assert row.score != 100.0, outcomes  # the source notebook was never graded as hers
        assert (row.state, row.score) == (GRADED, 70.0) or (
            row.state == FAILED and "not accepted" in row.reason), outcomes
        page = feedback_copy(hub.layout.course, row.id)
        if page.exists():
            text = re.sub(r"<[^>]+>", "", page.read_text())  # the code without its highlighting
            assert "skip_connection = next_layer" in text  # her code, not the reference's
            assert "### BEGIN SOLUTION" not in text
    assert any(row.state == FAILED for row in rows)  # the swaps did reach the service


def test_killing_a_worker_and_the_service_during_a_burst_loses_nothing_and_grades_once(hub):
    write_policy(hub.layout, ON)
    burst = {"dan": reference_solutions(), "eva": solutions_for("bug_conv_block"), "fay": reference_solutions(),
             "gus": solutions_for("bug_unet_model")}
    for who, code in burst.items():
        prepare(hub, who, code)
    feedback_dir = hub.layout.exchange / COURSE / "feedback"
    released_before = set(feedback_dir.glob("*.html"))
    with ThreadPoolExecutor(len(burst)) as pool:
        list(pool.map(lambda who: submit_from_terminal(hub, who), burst))
    deadline = time.monotonic() + 120
    while not (busy := [r for r in queue(hub).all((GRADING,)) if r.student in {name(hub, w) for w in burst}]):
        assert time.monotonic() < deadline, "nothing of the burst started"
        time.sleep(0.2)
    victim = busy[0]
    os.kill(int(victim.worker.rsplit(":", 1)[1]), signal.SIGKILL)
    time.sleep(1)
    old_service = service_pid(hub)
    os.kill(old_service, signal.SIGKILL)
    rows = {who: wait_until_final(hub, who, 1, timeout=300) for who in burst}
    assert service_pid(hub) != old_service  # the hub started it again
    for [row] in rows.values():
        assert row.state == GRADED, row
    killed = next(row for [row] in rows.values() if row.id == victim.id)
    assert killed.attempts >= 2
    assert rows["dan"][0].score == rows["fay"][0].score == 100.0
    assert rows["eva"][0].score < 100.0 and rows["gus"][0].score < 100.0
    scores = normalised_scores(hub)
    for who, [row] in rows.items():
        assert sum(v for (s, _), v in scores.items() if s == name(hub, who)) == row.score
    # One feedback page per submission in the exchange: released once each.
    assert len(set(feedback_dir.glob("*.html")) - released_before) == len(burst)
