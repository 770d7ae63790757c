"""The instructor's week after the deadline, end to end on the hub with the local LMS (issue #32, point 3).

One hub for the module, bound to the local LTI 1.3 platform's course
bio101, grading on submit with a late policy of 10% per hour begun.  Three
students launch from the LMS and submit through the hub's exchange: Ben on
time with the skip-connection bug (70), Cal an hour-begun late with the
reference (100 - 10% = 90), Dee after the assignment's due date but within
the extension the instructor granted her first with the ``grant`` command
(70, no penalty).  Feedback is held until the due date: the service
releases Ben's and Cal's, and Dee's waits for her own.  The instructor changes a hidden check in the hub's
course copy to accept any skip connection; the ``regrade`` command's
preview lists exactly Ben and Dee and changes nothing; applied, the LMS's
gradebook gets Ben's and Dee's new scores once each and nothing new for
Cal; an extension granted to Cal afterwards posts her 100 once.  Then the
instructor takes the change back, and a second regrade of Ben and Dee is
run through kill -9 of a worker and of the grading service during its
preview and again during its apply: each student always has the old result
or the new one, whole, and the regrade finishes with each change posted
once.  Needs what tests/test_hub.py needs.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from grader.course import ROOT, reference_solutions
from grader.dev.examples import solutions_for
from hub import accounts
from hub.grade_on_submit.queue import GRADED, open_engine
from hub.grade_on_submit.regrade_store import (
    APPLIED,
    APPLY_DONE,
    APPLYING,
    GRADING,
    PREVIEW_DONE,
    PREVIEWED,
    UNCHANGED,
    RegradeRecords,
    StudentRow,
)
from hub.grade_on_submit.settings import QUEUE_FILE
from hub.layout import ASSIGNMENT
from hub.lms.registrations import Platform, save_platforms
from hub.lms.testing.platform import LocalPlatform, new_person
from hub.lms.testing.tls import make_localhost_certificate
from hub.provision import grader_env
from tests.hub_harness import free_ports, running_hub
from tests.test_grade_on_submit import processes, service_pid
from tests.test_hub import MISSING
from tests.test_lms_hub import COURSE, HttpLaunch, account_of, put_notebook, wait_for_score
from tests.test_regrade_course import LENIENT

pytestmark = [pytest.mark.slow, pytest.mark.hub]
if MISSING and not os.environ.get("CI"):
    pytest.skip("; ".join(MISSING), allow_module_level=True)

ARTIFACTS = Path(os.environ.get("UNET_ARTIFACTS", ROOT / "reports" / "browser")) / "week_after_deadline"
LATE = {"percent": 10, "per": "hour"}
# Feedback is held until the student's own due date (the score is shown at once).
POLICY = {ASSIGNMENT: {"grade_on_submit": True, "show": "score", "per_hour": 0, "late": LATE}}
LEASE = 10.0
CHECKS = "notebooks/unet_segmentation/spec_checks.py"


@pytest.fixture(scope="module")
def lms():
    # Where the grader account (the LMS service) may read the CA: pytest's own folders are root's alone.
    folder = Path(tempfile.mkdtemp(prefix="unet-lms-tls-", dir="/var/tmp"))
    folder.chmod(0o755)
    tls = make_localhost_certificate(folder)
    before = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(tls.ca)
    platform = LocalPlatform(tls).start()
    platform.add_course(COURSE, "Biology 101")
    platform.add_link(COURSE, "unet", "U-Net segmentation")
    platform.people = {}
    for given, family, role in [("Ben", "Ontime", "Learner"), ("Cal", "Late", "Learner"),
                                ("Dee", "Extended", "Learner")]:
        platform.people[given] = platform.enrol(COURSE, new_person(given, family, role=role))
    yield platform
    platform.stop()
    shutil.rmtree(folder, ignore_errors=True)
    if before is None:
        os.environ.pop("SSL_CERT_FILE", None)
    else:
        os.environ["SSL_CERT_FILE"] = before


@pytest.fixture(scope="module")
def hub(small_data, lms):
    assert not MISSING, MISSING
    registration = Platform(**lms.bound_registration(COURSE))
    [lms_port] = free_ports(1)

    def register(layout) -> None:
        save_platforms(layout.lms_dir / "platforms.json", [registration])

    with running_hub(small_data, students=[], visitors=[], artifacts=ARTIFACTS, policy=POLICY, prepare=register,
                     lms=True, lms_port=lms_port, tls_cert=str(lms.tls.cert), tls_key=str(lms.tls.key),
                     grading_lease=LEASE) as running:
        base = f"{running.url}/hub"
        lms.register_tool(f"{base}/lti13/oauth_login", f"{base}/lti13/oauth_callback", base,
                          jwks_url=f"{base}/lti13/jwks")
        yield running


# -- the instructor's commands, as the account that owns the course folder ------------------------------------


def as_instructor(hub, module: str, *args: str) -> str:
    """``python -m hub.grade_on_submit.MODULE ARGS`` as the grader account in the course folder; its answer."""
    done = accounts.run_as(hub.layout.grader, [str(hub.layout.env / "bin" / "python"), "-m",
                                               f"hub.grade_on_submit.{module}", "--by", "tess", *args],
                           cwd=hub.layout.course, env=grader_env(hub.layout), cgroups=hub.layout.grader_cgroups,
                           timeout=600, check=False)
    assert done.returncode == 0, f"{module} {args}: {done.stdout}{done.stderr}"
    return done.stdout


def write_checks(hub, text: str) -> None:
    """The course's hidden checks as the instructor saves them (the grader account owns the course copy)."""
    staged = Path(f"/tmp/checks-{os.getpid()}.py")
    staged.write_text(text)
    staged.chmod(0o644)
    try:
        copied = accounts.run_as(hub.layout.grader, ["cp", str(staged), str(hub.layout.course / CHECKS)],
                                 cwd=hub.layout.course, env={}, check=False)
        assert copied.returncode == 0, copied.stderr
    finally:
        staged.unlink()


# -- what the test reads, as root ---------------------------------------------------------------------------------


def records(hub) -> RegradeRecords:
    return RegradeRecords(open_engine(f"sqlite:///{hub.layout.course / QUEUE_FILE}"))


def rows(hub, regrade_id: int) -> dict[str, StudentRow]:
    return {r.student: r for r in records(hub).students(regrade_id)}


def wait_for_rows(hub, regrade_id: int, done: tuple[str, ...], timeout: float = 600) -> dict[str, StudentRow]:
    deadline = time.monotonic() + timeout
    while True:
        now = rows(hub, regrade_id)
        if all(r.state in done for r in now.values()):
            return now
        assert time.monotonic() < deadline, (now, hub.log_text()[-4000:])
        time.sleep(1)


def cell_scores(hub, account: str) -> dict[str, float]:
    """The student's automatic score per graded code cell in the live gradebook."""
    with Gradebook(f"sqlite:///{hub.layout.course / 'gradebook.db'}") as gb:
        return {g.name: float(g.auto_score or 0.0) for nb in gb.find_submission(ASSIGNMENT, account).notebooks
                for g in nb.grades if g.cell_type == "code"}


def total(hub, account: str) -> float:
    with Gradebook(f"sqlite:///{hub.layout.course / 'gradebook.db'}") as gb:
        submission = gb.find_submission(ASSIGNMENT, account)
        return float(submission.score) - float(submission.late_submission_penalty or 0.0)


def posts_of(lms, given: str) -> list[float]:
    return [p["scoreGiven"] for p in lms.score_posts if p["userId"] == lms.people[given].sub]


def assert_first_posts(lms) -> None:
    """What the LMS has before any regrade: Ben's 70 posted as "Submitted" before the due date and once more as
    "Completed" once it passed, Cal's 90 and Dee's 70 once each."""
    deadline = time.monotonic() + 60
    while len(posts_of(lms, "Ben")) < 2:
        assert time.monotonic() < deadline, lms.score_posts
        time.sleep(0.5)
    assert [p["activityProgress"] for p in lms.score_posts if p["userId"] == lms.people["Ben"].sub] == [
        "Submitted", "Completed"]
    assert {g: posts_of(lms, g) for g in ("Ben", "Cal", "Dee")} == {"Ben": [70, 70], "Cal": [90], "Dee": [70]}


def graded_row(hub, account: str):
    from hub.grade_on_submit.queue import Queue

    queue = Queue(open_engine(f"sqlite:///{hub.layout.course / QUEUE_FILE}"))
    return next(r for r in queue.of_student(account) if r.assignment == ASSIGNMENT and r.state == GRADED)


def submit(hub, lms, given: str, code: dict[str, str], expected: float) -> str:
    assert HttpLaunch(hub, lms, given).post().status_code == 302
    account = account_of(hub, lms, given)
    put_notebook(hub, account, code)
    result = hub.nbgrader_as(account, "submit", ASSIGNMENT)
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for_score(lms, given, expected, timeout=400)
    return account


def whole(hub, account: str, row: StudentRow) -> str:
    """Which of the row's two results the student has now, cell by cell and in total: 'old' or 'new'."""
    assert row.old is not None and row.new is not None
    now = cell_scores(hub, account)
    for side in ("old", "new"):
        result = getattr(row, side)
        if all(now[c] == result["cells"][c].get("auto", result["cells"][c]["points"]) for c in now) and \
                total(hub, account) == result["total"]:
            return side
    raise AssertionError(f"{account} has neither the old nor the new result: {now}, total {total(hub, account)}; "
                         f"old {row.old}, new {row.new}")


# -- the week ------------------------------------------------------------------------------------------------------


def test_students_submit_on_time_late_and_with_an_extension(hub, lms):
    original = (hub.layout.course / CHECKS).read_text()
    hub.original_checks = original
    ben = submit(hub, lms, "Ben", solutions_for("bug_conv_block"), 70)
    # The due date passes now: Ben was on time; the next ones are late, but Dee has an extension first.
    due = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert hub.grader("db", "assignment", "add", ASSIGNMENT, f"--duedate={due} UTC").returncode == 0
    assert HttpLaunch(hub, lms, "Dee").post().status_code == 302
    granted = as_instructor(hub, "grant", account_of(hub, lms, "Dee"), "--hours", "48")
    assert "no submission yet" in granted, granted
    time.sleep(1.1)
    cal = submit(hub, lms, "Cal", reference_solutions(), 90)
    dee = submit(hub, lms, "Dee", solutions_for("bug_conv_block"), 70)
    with Gradebook(f"sqlite:///{hub.layout.course / 'gradebook.db'}") as gb:
        assert gb.find_submission(ASSIGNMENT, ben).late_submission_penalty in (None, 0)
        assert gb.find_submission(ASSIGNMENT, cal).late_submission_penalty == 10
        assert gb.find_submission(ASSIGNMENT, dee).late_submission_penalty in (None, 0)
        assert gb.find_submission(ASSIGNMENT, dee).extension is not None
    assert graded_row(hub, cal).score == 90 and graded_row(hub, dee).score == 70
    # Ben's feedback, held while the assignment had no due date, is released by the service once it passed;
    # Cal's (late) was released as she was graded; Dee's waits for her own due date.
    deadline = time.monotonic() + 90
    while not graded_row(hub, ben).released:
        assert time.monotonic() < deadline, "Ben's held feedback was not released after the due date"
        time.sleep(1)
    assert graded_row(hub, cal).released and not graded_row(hub, dee).released
    assert_first_posts(lms)


def test_a_changed_check_is_previewed_then_applied_and_the_lms_gets_each_change_once(hub, lms):
    ben, cal, dee = (account_of(hub, lms, g) for g in ("Ben", "Cal", "Dee"))
    write_checks(hub, hub.original_checks + LENIENT)
    said = as_instructor(hub, "regrade", "preview", "--everyone")
    regrade_id = int(said.split("Regrade ", 1)[1].split()[0])
    previewed = wait_for_rows(hub, regrade_id, PREVIEW_DONE)
    assert all(r.state == PREVIEWED for r in previewed.values()), previewed
    shown = as_instructor(hub, "regrade", "show", str(regrade_id))
    moved = sorted([ben, dee])
    assert f"2 of 3 student(s) move: {', '.join(moved)}." in shown, shown
    for account in moved:
        assert previewed[account].new["total"] > previewed[account].old["total"] == 70
    assert previewed[cal].new["total"] == previewed[cal].old["total"] == 90
    # Nothing has reached anyone yet.
    time.sleep(5)  # the LMS service reconciles every 2 s
    assert_first_posts(lms)
    assert total(hub, ben) == 70
    as_instructor(hub, "regrade", "apply", str(regrade_id))
    applied = wait_for_rows(hub, regrade_id, APPLY_DONE)
    assert {a: r.state for a, r in applied.items()} == {ben: APPLIED, cal: UNCHANGED, dee: APPLIED}, applied
    for given, account in [("Ben", ben), ("Dee", dee)]:
        new = applied[account].new["total"]
        wait_for_score(lms, given, new)
        assert total(hub, account) == new
        assert "Regraded on" in (graded_row(hub, account).reason or "")
    time.sleep(5)
    assert posts_of(lms, "Ben") == [70, 70, applied[ben].new["total"]]
    assert posts_of(lms, "Dee") == [70, applied[dee].new["total"]]
    assert posts_of(lms, "Cal") == [90]
    hub.first_regrade = applied


def test_an_extension_granted_afterwards_moves_one_score_once(hub, lms):
    cal = account_of(hub, lms, "Cal")
    others = {g: posts_of(lms, g) for g in ("Ben", "Dee")}
    said = as_instructor(hub, "grant", cal, "--hours", "48")
    assert "score 90 -> 100 of 100" in said, said
    wait_for_score(lms, "Cal", 100)
    time.sleep(5)
    assert posts_of(lms, "Cal") == [90, 100]
    assert {g: posts_of(lms, g) for g in ("Ben", "Dee")} == others


def worker_pid(row: StudentRow) -> int:
    assert row.worker is not None
    return int(row.worker.rsplit(":", 1)[1])


def kill_twice(hub, regrade_id: int, busy: str, account: str) -> None:
    """kill -9 the worker on ``account``'s row while it is ``busy``, then the service while another retries it."""
    deadline = time.monotonic() + 600
    while (row := rows(hub, regrade_id)[account]).state != busy or row.worker is None:
        assert time.monotonic() < deadline and row.state not in APPLY_DONE + PREVIEW_DONE, row
        time.sleep(0.01)
    first = row
    os.kill(worker_pid(first), signal.SIGKILL)
    # After the lease runs out, a fresh worker takes the row up again: the service dies under it.
    while (row := rows(hub, regrade_id)[account]).attempts < first.attempts + 1 or row.state != busy:
        assert time.monotonic() < deadline and row.state not in APPLY_DONE + PREVIEW_DONE, row
        time.sleep(0.01)
    killed = service_pid(hub)
    os.kill(killed, signal.SIGKILL)
    while not any(pid != killed for pid, cmd in processes()
                  if cmd.endswith("-m\0hub.grade_on_submit\0") and "as_account" not in cmd):
        assert time.monotonic() < deadline, "the hub did not start the grading service again"
        time.sleep(1)


def test_kill_9_during_a_preview_and_an_apply_leaves_old_or_new_and_the_regrade_finishes(hub, lms):
    ben, dee = account_of(hub, lms, "Ben"), account_of(hub, lms, "Dee")
    first = hub.first_regrade
    posts = {g: posts_of(lms, g) for g in ("Ben", "Cal", "Dee")}
    # The instructor takes the change back: the strict check again, and a regrade of the two it moved.
    write_checks(hub, hub.original_checks)
    said = as_instructor(hub, "regrade", "preview", "--students", f"{ben},{dee}")
    regrade_id = int(said.split("Regrade ", 1)[1].split()[0])
    kill_twice(hub, regrade_id, GRADING, ben)
    previewed = wait_for_rows(hub, regrade_id, PREVIEW_DONE)
    assert all(r.state == PREVIEWED for r in previewed.values()), previewed
    assert previewed[ben].attempts == 3
    for account in (ben, dee):
        assert previewed[account].old["total"] == first[account].new["total"]
        assert previewed[account].new["total"] == 70
        assert whole(hub, account, previewed[account]) == "old"
    time.sleep(5)
    assert {g: posts_of(lms, g) for g in ("Ben", "Cal", "Dee")} == posts  # a preview posts nothing
    as_instructor(hub, "regrade", "apply", str(regrade_id))
    kill_twice(hub, regrade_id, APPLYING, dee)
    for account in (ben, dee):
        whole(hub, account, previewed[account])  # the old result or the new one, never a mix
    applied = wait_for_rows(hub, regrade_id, APPLY_DONE)
    assert {a: r.state for a, r in applied.items()} == {ben: APPLIED, dee: APPLIED}, applied
    for given, account in [("Ben", ben), ("Dee", dee)]:
        assert whole(hub, account, applied[account]) == "new"
        wait_for_score(lms, given, 70)
    time.sleep(5)
    assert posts_of(lms, "Ben") == [*posts["Ben"], 70]
    assert posts_of(lms, "Dee") == [*posts["Dee"], 70]
    assert posts_of(lms, "Cal") == posts["Cal"]
