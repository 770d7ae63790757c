"""The instructor's week after the deadline, end to end on the hub with the local LMS (issue #32, point 3).

One hub for the module, bound to the local LTI 1.3 platform's course
bio101, grading on submit with a late policy of 10% per hour begun.  Three
students launch from the LMS and submit through the hub's exchange: Ben on
time with the skip-connection bug (70), Cal an hour-begun late with the
reference (100 - 10% = 90), Dee after the assignment's due date but within
the extension the instructor granted her first with the ``grant`` command
(70, no penalty).  Feedback is held until the due date: the service
releases Ben's and Cal's, and Dee's waits for her own.  The instructor changes a hidden check in the hub's
course copy to accept any skip connection; on the grading service's regrade
page (Tess, the LMS's instructor, logged in by her launch, as her browser
would be: the page's form and its token), her preview lists exactly Ben and
Dee with their old and new scores and changes nothing, and a student reaches
neither the page nor its buttons; applied there, the LMS's gradebook gets
Ben's and Dee's new scores once each and nothing new for Cal; an extension
granted to Cal afterwards posts her 100 once.  Then the
instructor takes the change back, and a second regrade of Ben and Dee is
run through kill -9 of a worker and of the grading service during its
preview and again during its apply: each student always has the old result
or the new one, whole, and the regrade finishes with each change posted
once.  Needs what tests/test_hub.py needs.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from nbgrader.api import Gradebook

from grader.course import reference_solutions
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
from hub.provision import grader_env
from tests.lms_harness import (
    HttpLaunch,
    account_of,
    artifacts,
    grading_on_submit,
    launched_session,
    lms_hub,
    local_lms,
    put_notebook,
    wait_for_score,
)
from tests.test_grade_on_submit import processes, service_pid
from tests.test_hub import MISSING
from tests.test_regrade_course import LENIENT

pytestmark = [pytest.mark.slow, pytest.mark.hub]
if MISSING and not os.environ.get("CI"):
    pytest.skip("; ".join(MISSING), allow_module_level=True)

ARTIFACTS = artifacts("week_after_deadline")
# Feedback is held until the student's own due date (the score is shown at once).
POLICY = grading_on_submit("score", late={"percent": 10, "per": "hour"})
LEASE = 10.0
CHECKS = "notebooks/unet_segmentation/spec_checks.py"
PEOPLE = [("Tess", "Teacher", "Instructor"), ("Ben", "Ontime", "Learner"), ("Cal", "Late", "Learner"),
          ("Dee", "Extended", "Learner")]


@pytest.fixture(scope="module")
def lms():
    with local_lms(PEOPLE) as platform:
        yield platform


@pytest.fixture(scope="module")
def hub(small_data, lms):
    assert not MISSING, MISSING
    with lms_hub(small_data, lms, ARTIFACTS, POLICY, grading_lease=LEASE) as running:
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


class RegradePage:
    """The grading service's regrade page as a person's browser uses it: their launch's login, the form's token."""

    def __init__(self, hub, lms, given: str):
        self.session, self.ca = launched_session(hub, lms, given)
        self.service = f"{hub.url}/services/{hub.layout.grading_service}/"
        self.url = f"{self.service}regrade"

    def get(self, regrade_id: int | None = None) -> requests.Response:
        return self.session.get(self.url, params={"id": regrade_id} if regrade_id else None, timeout=120,
                                verify=self.ca)

    def post(self, xsrf: str | None, **form: str) -> requests.Response:
        """The page's form sent with ``xsrf`` as its token (None: the one the page's own form holds)."""
        if xsrf is None:
            xsrf = html.unescape(re.search(r'name="_xsrf" value="([^"]+)"', self.get().text).group(1))
        return self.session.post(self.url, data={"_xsrf": xsrf, **form}, timeout=600, verify=self.ca,
                                 allow_redirects=False)

    def student_page_xsrf(self) -> str:
        """The token the service's student page gives its script (what a student's browser holds)."""
        page = self.session.get(self.service, timeout=120, verify=self.ca)
        assert page.status_code == 200, page.status_code
        return json.loads(re.search(r"xsrf = (\"[^\"]*\")", page.text).group(1))

    def shown(self, regrade_id: int, stage: str, timeout: float = 600) -> str:
        """The regrade's page (as text, unescaped) once it says ``stage``."""
        deadline = time.monotonic() + timeout
        while True:
            page = self.get(regrade_id)
            assert page.status_code == 200, page.status_code
            text = html.unescape(page.text)
            if f"<h2>Regrade {regrade_id}: {stage}" in text:
                return text
            assert time.monotonic() < deadline, text[-3000:]
            time.sleep(2)


def assert_row_shown(text: str, row: StudentRow, state: str) -> None:
    """The page's row of ``row``'s student: the state, old and new total, and each cell whose points moved."""
    assert row.old is not None and row.new is not None
    found = re.search(rf"<tr><td>{re.escape(row.student)}</td><td>{state}</td>"
                      rf"<td>{row.old['total']:g} -> {row.new['total']:g}</td><td><pre>(.*?)</pre>", text, re.S)
    assert found, (row.student, text[-3000:])
    for cell, new in row.new["cells"].items():
        old = row.old["cells"][cell]
        if old["points"] != new["points"]:
            assert f"{cell}: {old['points']:g} -> {new['points']:g} of {new['max']:g}" in found.group(1), found.group(1)


def test_a_changed_check_is_previewed_then_applied_and_the_lms_gets_each_change_once(hub, lms):
    """The instructor previews and applies on the grading service's regrade page, as in her browser."""
    ben, cal, dee = (account_of(hub, lms, g) for g in ("Ben", "Cal", "Dee"))
    write_checks(hub, hub.original_checks + LENIENT)
    page = RegradePage(hub, lms, "Tess")  # her first launch makes her account, a grader's
    tess = account_of(hub, lms, "Tess")
    started = page.post(None, action="preview", assignment=ASSIGNMENT, who="everyone")
    assert started.status_code == 200, started.text[-2000:]
    regrade_id = int(re.search(r"Regrade (\d+) started \(everyone\)", html.unescape(started.text)).group(1))
    previewed = wait_for_rows(hub, regrade_id, PREVIEW_DONE)
    assert all(r.state == PREVIEWED for r in previewed.values()), previewed
    shown = page.shown(regrade_id, "preview complete")
    moved = sorted([ben, dee])
    assert f"Students whose score moves: {', '.join(moved)}." in shown, shown[-3000:]
    for account in moved:
        assert previewed[account].new["total"] > previewed[account].old["total"] == 70
        assert_row_shown(shown, previewed[account], PREVIEWED)
    assert previewed[cal].new["total"] == previewed[cal].old["total"] == 90
    assert 'value="apply"' in shown
    # A student reaches neither the page nor its buttons, even with a token of the service's own pages;
    # the instructor's own session without the form's token applies nothing either.
    student = RegradePage(hub, lms, "Ben")
    assert student.get(regrade_id).status_code == 403
    assert student.post(student.student_page_xsrf(), action="apply", id=str(regrade_id)).status_code == 403
    assert page.post("", action="apply", id=str(regrade_id)).status_code == 403
    assert records(hub).get(regrade_id).applied_by is None
    # Nothing has reached anyone yet.
    time.sleep(5)  # the LMS service reconciles every 2 s
    assert_first_posts(lms)
    assert total(hub, ben) == 70
    answer = page.post(None, action="apply", id=str(regrade_id))
    assert f"Regrade {regrade_id}: 3 student(s) to apply." in html.unescape(answer.text), answer.text[-2000:]
    applied = wait_for_rows(hub, regrade_id, APPLY_DONE)
    assert {a: r.state for a, r in applied.items()} == {ben: APPLIED, cal: UNCHANGED, dee: APPLIED}, applied
    regrade = records(hub).get(regrade_id)
    assert (regrade.requested_by, regrade.applied_by) == (tess, tess)
    shown = page.shown(regrade_id, f"applied by {tess}")
    for account in moved:
        assert_row_shown(shown, applied[account], APPLIED)
    assert 'value="apply"' not in shown
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
