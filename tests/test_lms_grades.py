"""Scores from the gradebook to the LMS's gradebook through the outbox, and the roster from the LMS, without a hub.

Against the local LTI 1.3 platform (https on localhost): one line item per
assignment however many workers race or restart, the latest score, the
policies, retries when the LMS is down or busy, the reason when it refuses,
kill -9 of the service while a score is on its way, the NRPS sync, and
tokens with exactly the scopes used that never reach a log.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from nbgrader.api import Gradebook
from sqlalchemy import delete, select

from grader.course import ROOT
from hub.lms import enrol, roles
from hub.lms.binding import binding_of
from hub.lms.client import LINEITEM, MEMBERSHIP, SCORE, LmsClient
from hub.lms.keys import ensure_tool_key
from hub.lms.outbox import FAILED, PENDING, POSTED, Key, Outbox, Score
from hub.lms.poster import Poster
from hub.lms.registrations import Platform, save_platforms
from hub.lms.roster import RosterSync
from hub.lms.scores import Reconciler
from hub.lms.tables import enrolments, line_items, lms_engine
from hub.lms.testing.platform import LocalPlatform, new_person
from hub.lms.testing.tls import make_localhost_certificate

# nbgrader's own add_submission warns about its session; the gradebook is right all the same.
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")
ASSIGNMENT = "unet_segmentation"
OFFERED = [LINEITEM, "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly", SCORE]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    tls = make_localhost_certificate(tmp_path_factory.mktemp("tls"))
    lms = LocalPlatform(tls).start()
    key = ensure_tool_key(tmp_path_factory.mktemp("key") / "tool-key.pem")
    lms.register_tool("https://tool.test/hub/lti13/oauth_login", "https://tool.test/hub/lti13/oauth_callback",
                      "https://tool.test/hub", jwks=key.public_jwks())
    lms.key = key
    yield lms
    lms.stop()


@pytest.fixture(autouse=True)
def alembic_on_path(monkeypatch):
    monkeypatch.setenv("PATH", f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}")


class Course:
    """One LMS course linked to a throw-away hub course: its database, gradebook, outbox and workers."""

    counter = 0

    def __init__(self, platform: LocalPlatform, folder, database_url: str = ""):
        Course.counter += 1
        self.platform, self.folder = platform, folder
        self.id = f"course{Course.counter}"
        platform.add_course(self.id, f"Course {Course.counter}")
        self.registration = Platform(**platform.bound_registration(self.id))
        self.binding = binding_of([self.registration])
        (folder / "grade_on_submit").mkdir()
        self.engine = lms_engine(database_url or f"sqlite:///{folder / 'grade_on_submit' / 'queue.sqlite'}")
        self.gradebook = f"sqlite:///{folder / 'gradebook.db'}"
        with Gradebook(self.gradebook) as gb:
            gb.add_assignment(ASSIGNMENT)
            gb.add_notebook("unet", ASSIGNMENT)
            gb.add_grade_cell("all", "unet", ASSIGNMENT, max_score=100, cell_type="code")
        enrol.record_context(self.engine, {
            "issuer": platform.issuer, "context_id": self.id, "deployment_id": platform.deployment_id,
            "context_title": "Course", "lineitems_url": f"{platform.issuer}/api/{self.id}/lineitems",
            "nrps_url": f"{platform.issuer}/api/{self.id}/memberships", "ags_scopes": OFFERED})
        self.outbox = Outbox(self.engine, max_backoff=0.5)
        self.reconciler = Reconciler(self.engine, self.outbox, self.gradebook, folder / "grade_on_submit.json",
                                     settle=0, binding=self.binding)
        self.accounts: dict[str, str] = {}

    def poster(self) -> Poster:
        return Poster(self.engine, self.outbox, {self.platform.issuer: LmsClient(self.registration,
                                                                                 self.platform.key)}, lease=3,
                      binding=self.binding)

    def student(self, given: str, family: str) -> str:
        person = self.platform.enrol(self.id, new_person(given, family))
        account = enrol.record(self.engine, self.gradebook, {
            "issuer": self.platform.issuer, "sub": person.sub, "name": person.name, "given_name": given,
            "family_name": family, "email": person.email, "role": roles.STUDENT, "context_id": self.id},
            prefix="t-", tag="t")
        self.accounts[given] = account
        self.platform.courses[self.id].people[person.sub] = person
        return account

    def grade(self, given: str, score: float) -> None:
        """The gradebook gets ``score`` for the student, as autograde leaves it."""
        with Gradebook(self.gradebook) as gb:
            try:
                gb.find_submission(ASSIGNMENT, self.accounts[given])
            except Exception:
                gb.add_submission(ASSIGNMENT, self.accounts[given])
            grade = gb.find_grade("all", "unet", ASSIGNMENT, self.accounts[given])
            grade.auto_score = score
            grade.needs_manual_grade = False
            gb.db.commit()

    def lms_scores(self) -> dict[str, float | None]:
        return {name.split()[0]: score for name, score in self.platform.gradebook(self.id).get(ASSIGNMENT, {}).items()}

    def drain(self, posters: list[Poster] | None = None, timeout: float = 60) -> None:
        """Reconcile and post until nothing is due (and none waits for a retry), or ``timeout``."""
        posters = posters or [self.poster()]
        deadline = time.monotonic() + timeout
        self.reconciler.run_once()
        while time.monotonic() < deadline:
            worked = [False] * len(posters)

            def run(index: int, worked: list[bool] = worked) -> None:
                worked[index] = posters[index].post_one(f"w{index}")

            threads = [threading.Thread(target=run, args=(i,)) for i in range(len(posters))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if not any(worked) and not self.outbox.rows((PENDING, "posting")):
                return
            if not any(worked):
                time.sleep(0.1)
        raise AssertionError(f"the outbox did not drain: {self.outbox.rows((PENDING, 'posting'))}")


@pytest.fixture
def course(platform, tmp_path):
    platform.answers.clear()
    platform.delay = platform.score_delay = 0.0
    return Course(platform, tmp_path)


def test_scores_reach_the_lms_gradebook_once_in_one_column(course, platform):
    course.student("Ada", "Lovelace")
    course.student("Bob", "Builder")
    course.grade("Ada", 100)
    course.grade("Bob", 70)
    course.drain()
    assert course.lms_scores() == {"Ada": 100, "Bob": 70}
    items = platform.courses[course.id].lineitems
    assert len(items) == 1
    [item] = items.values()
    assert (item["resourceId"], item["scoreMaximum"], item["tag"]) == (ASSIGNMENT, 100, "unet-segmentation")
    posts = [p for p in platform.score_posts if p["course"] == course.id]
    assert len(posts) == 2
    assert {(p["activityProgress"], p["gradingProgress"], p["scoreMaximum"]) for p in posts} == {
        ("Submitted", "FullyGraded", 100)}
    course.drain()  # nothing changed: nothing posted again
    assert len([p for p in platform.score_posts if p["course"] == course.id]) == 2


def test_the_latest_score_counts_and_later_timestamps_win(course, platform):
    course.student("Ada", "Lovelace")
    course.grade("Ada", 40)
    course.drain()
    course.grade("Ada", 90)
    course.drain()
    assert course.lms_scores() == {"Ada": 90}
    stamps = [p["timestamp"] for p in platform.score_posts if p["course"] == course.id]
    assert len(stamps) == 2 and stamps[0] < stamps[1]
    # A score still waiting when a newer one comes is superseded, never posted.
    course.grade("Ada", 10)
    course.reconciler.run_once()
    course.grade("Ada", 95)
    course.drain()
    assert course.lms_scores() == {"Ada": 95}
    assert 10 not in [p["scoreGiven"] for p in platform.score_posts if p["course"] == course.id]


def test_manual_grading_and_the_due_date_are_told_truthfully(course, platform):
    course.student("Ada", "Lovelace")
    course.grade("Ada", 50)
    with Gradebook(course.gradebook) as gb:
        gb.find_grade("all", "unet", ASSIGNMENT, course.accounts["Ada"]).needs_manual_grade = True
        gb.db.commit()
    course.drain()
    [post] = [p for p in platform.score_posts if p["course"] == course.id]
    assert post["gradingProgress"] == "PendingManual"
    with Gradebook(course.gradebook) as gb:
        gb.update_or_create_assignment(ASSIGNMENT, duedate=datetime.now(UTC) - timedelta(days=1))
        gb.find_grade("all", "unet", ASSIGNMENT, course.accounts["Ada"]).needs_manual_grade = False
        gb.db.commit()
    course.drain()
    last = [p for p in platform.score_posts if p["course"] == course.id][-1]
    assert (last["activityProgress"], last["gradingProgress"]) == ("Completed", "FullyGraded")


def test_show_nothing_sends_nothing_until_the_due_date(course, platform):
    (course.folder / "grade_on_submit.json").write_text(json.dumps(
        {ASSIGNMENT: {"grade_on_submit": True, "show": "nothing", "per_hour": 0}}))
    with Gradebook(course.gradebook) as gb:
        gb.update_or_create_assignment(ASSIGNMENT, duedate=datetime.now(UTC) + timedelta(seconds=3))
    course.student("Ada", "Lovelace")
    course.grade("Ada", 100)
    course.drain()
    assert course.lms_scores() == {} and not course.outbox.rows()
    time.sleep(3.5)
    course.drain()
    assert course.lms_scores() == {"Ada": 100}


def test_two_workers_racing_a_restart_and_a_lost_table_make_one_column(course, platform):
    for name in ["Ada", "Bob", "Cy", "Di", "Ed", "Flo"]:
        course.student(name, "Racer")
        course.grade(name, 60)
    platform.delay = 0.2  # every call to the LMS takes a while: the workers overlap
    course.drain(posters=[course.poster(), course.poster()])
    assert len(platform.courses[course.id].lineitems) == 1
    # The table of columns lost (a crash after the LMS made it, a restored database): found again by resourceId.
    with course.engine.begin() as db:
        db.execute(delete(line_items))
    course.grade("Ada", 80)
    course.drain(posters=[course.poster(), course.poster()])
    assert len(platform.courses[course.id].lineitems) == 1
    assert course.lms_scores()["Ada"] == 80


def test_a_score_waits_while_an_older_one_of_the_same_student_is_on_its_way_and_blocks_no_one(tmp_path):
    outbox = Outbox(lms_engine(f"sqlite:///{tmp_path / 'q.sqlite'}"))
    ada, bob = Key("i", "c", "ada", "a"), Key("i", "c", "bob", "a")
    graded = Score(50.0, 100.0, "Submitted", "FullyGraded")
    first = outbox.enqueue(ada, graded)
    assert outbox.claim("w1", lease=60).id == first  # on its way
    newer = outbox.enqueue(ada, Score(90.0, 100.0, "Submitted", "FullyGraded"))
    other = outbox.enqueue(bob, graded)
    assert outbox.claim("w2", lease=60).id == other  # not Ada's newer score, and not nothing
    assert outbox.claim("w3", lease=60) is None
    outbox.posted(outbox.rows(("posting",))[0], "w1")
    assert outbox.claim("w3", lease=60).id == newer


def test_on_postgresql_too_racing_workers_make_one_column_and_post_each_score_once(platform, tmp_path):
    """The grading queue's database may be PostgreSQL (several machines): the outbox's claims hold there too."""
    from tests.postgres import postgres_server

    with postgres_server("grading_queue") as url:
        course = Course(platform, tmp_path, database_url=url)
        for name in ["Ada", "Bob", "Cy", "Di"]:
            course.student(name, "Pg")
            course.grade(name, 80)
        platform.delay = 0.2
        try:
            course.drain(posters=[course.poster(), course.poster(), course.poster()])
        finally:
            platform.delay = 0.0
        assert len(platform.courses[course.id].lineitems) == 1
        assert len([p for p in platform.score_posts if p["course"] == course.id]) == 4
        assert course.lms_scores() == {"Ada": 80, "Bob": 80, "Cy": 80, "Di": 80}
        course.engine.dispose()


def test_a_busy_or_failing_lms_is_tried_again_with_backoff(course, platform):
    course.student("Ada", "Lovelace")
    course.grade("Ada", 100)
    platform.answers.extend([429, 503, 500])
    course.drain()
    assert course.lms_scores() == {"Ada": 100}
    [row] = course.outbox.rows()
    assert row.state == POSTED and row.attempts >= 2  # the token call took the 429, the posts the 5xx


def test_a_refused_token_is_tried_again_with_the_lms_words_meanwhile(course, platform):
    course.student("Ada", "Lovelace")
    course.grade("Ada", 100)
    course.reconciler.run_once()
    platform.answers.append(400)  # the token request of a fresh client: no score reached the LMS yet
    poster = course.poster()
    poster.post_one("w")
    [row] = course.outbox.rows()
    assert row.state == PENDING and "400" in row.last_error and "/token" in row.last_error
    course.drain(posters=[poster])
    assert course.lms_scores() == {"Ada": 100}


def test_the_lms_down_during_a_burst_gets_every_score_once_it_is_back(course, platform):
    names = ["Ada", "Bob", "Cy", "Di"]
    for name in names:
        course.student(name, "Burst")
    platform.outage()
    try:
        for index, name in enumerate(names):
            course.grade(name, 70 + 10 * index)
        course.reconciler.run_once()
        poster = course.poster()
        for _ in range(8):
            poster.post_one("w")
            time.sleep(0.2)
        waiting = course.outbox.rows((PENDING,))
        assert len(waiting) == 4 and all("cannot be reached" in r.last_error for r in waiting), waiting
    finally:
        platform.restore()
    course.drain()
    assert course.lms_scores() == {"Ada": 70, "Bob": 80, "Cy": 90, "Di": 100}
    assert len(platform.courses[course.id].lineitems) == 1


def test_a_refusal_ends_with_the_lms_reason(course, platform):
    course.student("Ada", "Lovelace")
    bob = course.student("Bob", "Leaver")
    sub = next(p.sub for p in platform.courses[course.id].people.values() if p.given_name == "Bob")
    platform.unenrol(course.id, sub)
    course.grade("Ada", 100)
    course.grade("Bob", 70)
    course.drain()
    [failed] = course.outbox.rows((FAILED,))
    assert failed.account == bob and "422" in failed.last_error and "not an active member" in failed.last_error
    assert course.lms_scores() == {"Ada": 100}
    course.drain()  # the same score is not tried again by itself
    assert len(course.outbox.rows((FAILED,))) == 1
    platform.courses[course.id].people[sub].status = "Active"  # back in the course
    assert course.outbox.retry_refused() == 1  # the instructor's button
    course.drain()
    assert course.lms_scores() == {"Ada": 100, "Bob": 70}


def test_the_roster_sync_enrols_before_any_launch_and_keeps_who_left(course, platform):
    course.student("Ada", "Lovelace")
    course.grade("Ada", 100)
    carol = platform.enrol(course.id, new_person("Carol", "Shaw"))
    platform.enrol(course.id, new_person("Tess", "Teacher", role="Instructor"))
    client = LmsClient(course.registration, platform.key)
    sync = RosterSync(course.engine, {platform.issuer: client}, course.gradebook, prefix="t-", tag="t",
                      binding=course.binding)
    [result] = sync.sync_all()
    assert result.error is None and result.active == 3
    with Gradebook(course.gradebook) as gb:
        emails = {s.email for s in gb.students}
    assert emails == {"ada.lovelace@example.edu", "carol.shaw@example.edu"}  # the instructor grades, no entry
    platform.unenrol(course.id, next(p.sub for p in platform.courses[course.id].people.values()
                                     if p.given_name == "Ada"))
    del platform.courses[course.id].people[carol.sub]  # gone from the LMS altogether
    [result] = sync.sync_all()
    assert len(result.left) == 2
    with course.engine.begin() as db:
        active = {r.account: r.active for r in db.execute(select(enrolments))}
    assert active[course.accounts["Ada"]] is False and sum(active.values()) == 1
    with Gradebook(course.gradebook) as gb:
        assert len(gb.students) == 2  # nobody deleted
        assert gb.find_submission(ASSIGNMENT, course.accounts["Ada"]).score == 100


def test_tokens_have_exactly_the_scopes_used_and_never_reach_a_log(course, platform, caplog):
    caplog.set_level(logging.DEBUG)
    platform.token_requests.clear()
    course.student("Ada", "Lovelace")
    course.grade("Ada", 100)
    platform.answers.append(503)
    course.drain()
    client = LmsClient(course.registration, platform.key)
    RosterSync(course.engine, {platform.issuer: client}, course.gradebook, "t-", "t", binding=course.binding).sync_all()
    assert {tuple(s) for s in platform.token_requests} == {(LINEITEM,), (SCORE,), (MEMBERSHIP,)}
    assert platform.issued_tokens and not any(t in caplog.text for t in platform.issued_tokens)
    assert course.lms_scores() == {"Ada": 100}


def test_kill_9_of_the_service_while_a_score_is_on_its_way(course, platform, tmp_path_factory):
    """The real service process, handed its secrets through the pipe; killed while the LMS takes a score."""
    course.student("Ada", "Lovelace")
    course.grade("Ada", 70)
    secrets = tmp_path_factory.mktemp("secrets")
    (secrets / "key.pem").write_text(platform.key.pem)
    save_platforms(secrets / "platforms.json", [course.registration])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "UNET_GRADING_COURSE": str(course.folder),
           "UNET_GRADING_GRADEBOOK": course.gradebook, "UNET_LMS_SETTLE": "0", "UNET_LMS_POLL": "0.3",
           "UNET_LMS_LEASE": "3", "UNET_LMS_MAX_BACKOFF": "1", "UNET_LMS_SYNC_MINUTES": "600"}
    env.pop("JUPYTERHUB_API_TOKEN", None)
    command = [sys.executable, "-I", str(ROOT / "hub" / "lms" / "secrets_pipe.py"), str(secrets / "key.pem"),
               str(secrets / "platforms.json"), "--", sys.executable, "-m", "hub.lms.service"]

    def start() -> subprocess.Popen:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    platform.score_delay = 2.0
    arrived = platform.score_arrivals
    service = start()
    try:
        deadline = time.monotonic() + 60
        while platform.score_arrivals == arrived:
            assert time.monotonic() < deadline and service.poll() is None, "no score reached the LMS"
            time.sleep(0.05)
        os.kill(service.pid, signal.SIGKILL)  # while the LMS is still taking it
        service.wait()
        platform.score_delay = 0.0
        course.grade("Ada", 85)  # a newer grading while the service is down
        service = start()
        deadline = time.monotonic() + 60
        while course.lms_scores() != {"Ada": 85} or course.outbox.rows((PENDING, "posting")):
            assert time.monotonic() < deadline, (course.lms_scores(), course.outbox.rows())
            time.sleep(0.2)
    finally:
        service.kill()
        service.wait()
    assert len(platform.courses[course.id].lineitems) == 1
    assert course.lms_scores() == {"Ada": 85}


def test_a_student_enrolled_elsewhere_gets_no_grade_there_and_the_page_says_why(course, platform):
    """Issue #30: another LMS course's instructor enrols a student of this course in theirs, and rosters sync."""
    from types import SimpleNamespace

    from hub.lms.web import status

    ada = course.student("Ada", "Lovelace")
    [sub] = [p.sub for p in platform.courses[course.id].people.values() if p.given_name == "Ada"]
    elsewhere = f"{course.id}-elsewhere"
    platform.add_course(elsewhere, "Someone else's course")
    platform.enrol(elsewhere, new_person("Eve", "Elsewhere", role="Instructor"))
    platform.enrol(elsewhere, type(platform.courses[course.id].people[sub])(sub, "Ada", "Lovelace", "a@x", "Learner"))
    # The other course on record, as one was before binding existed (its instructor's launch made it).
    enrol.record_context(course.engine, {
        "issuer": platform.issuer, "context_id": elsewhere, "deployment_id": platform.deployment_id,
        "context_title": "Someone else's course", "lineitems_url": f"{platform.issuer}/api/{elsewhere}/lineitems",
        "nrps_url": f"{platform.issuer}/api/{elsewhere}/memberships", "ags_scopes": OFFERED})
    client = LmsClient(course.registration, platform.key)
    results = {r.context_id: r for r in RosterSync(course.engine, {platform.issuer: client}, course.gradebook,
                                                   "t-", "t", binding=course.binding).sync_all()}
    assert results[course.id].error is None and results[course.id].active == 1
    assert results[elsewhere].error and "not to this LMS course" in results[elsewhere].error
    with course.engine.begin() as db:
        contexts_enrolled = {r.context_id for r in db.execute(enrolments.select())}
    assert contexts_enrolled == {course.id}  # nobody of the other course was enrolled here
    # Even an enrolment there on record (from before the binding) sends nothing there.
    enrol.record(course.engine, course.gradebook, {"issuer": platform.issuer, "sub": sub, "role": roles.STUDENT,
                                                   "context_id": elsewhere}, prefix="t-", tag="t")
    course.grade("Ada", 100)
    course.drain()
    assert course.lms_scores() == {"Ada": 100}
    assert platform.courses[elsewhere].lineitems == {} and platform.courses[elsewhere].scores == {}
    assert [p["course"] for p in platform.score_posts if p["course"] in (course.id, elsewhere)] == [course.id]
    # A score queued for it before the binding is refused with the reason, never posted.
    course.outbox.enqueue(Key(platform.issuer, elsewhere, ada, ASSIGNMENT), Score(100, 100, "Submitted",
                                                                                    "FullyGraded"))
    course.drain()
    assert platform.courses[elsewhere].scores == {}
    [refusal] = [r for r in course.outbox.rows((FAILED,)) if r.context_id == elsewhere]
    assert "not to this LMS course" in refusal.last_error
    page = status(SimpleNamespace(engine=course.engine, outbox=course.outbox, binding=course.binding))
    [there] = [p for p in page["people"] if p["account"] == ada and p["ignored"]]
    assert "from the LMS course \"Someone else's course\"" in there["ignored"] and "no grades sent there" in there[
        "ignored"]
    assert [c["ignored"] for c in page["courses"] if c["course"] == "Someone else's course"][0]
    assert course.id in page["binding"]


def test_a_late_score_reaches_the_lms_after_its_penalty_and_an_extension_moves_it_once(course, platform):
    from hub.grade_on_submit.grant import grant
    from hub.grade_on_submit.late_plugin import recompute

    due = datetime(2026, 12, 1, 12)
    (course.folder / "grade_on_submit.json").write_text(json.dumps(
        {ASSIGNMENT: {"late": {"percent": 10, "per": "day"}}}))
    course.student("Ada", "Lovelace")
    course.student("Bob", "Builder")
    with Gradebook(course.gradebook) as gb:
        gb.update_or_create_assignment(ASSIGNMENT, duedate=due)
    course.grade("Ada", 80)
    course.grade("Bob", 90)
    with Gradebook(course.gradebook) as gb:
        # As autograde leaves them: Ada a day and a second late, Bob on time to the second.
        gb.find_submission(ASSIGNMENT, course.accounts["Ada"]).timestamp = due + timedelta(days=1, seconds=1)
        gb.find_submission(ASSIGNMENT, course.accounts["Bob"]).timestamp = due
        gb.db.commit()
        for given in ("Ada", "Bob"):
            recompute(gb, course.folder, ASSIGNMENT, course.accounts[given])
    course.drain()
    assert course.lms_scores() == {"Ada": 64, "Bob": 90}
    posts = [p for p in platform.score_posts if p["course"] == course.id]
    assert len(posts) == 2
    granted = grant(course.folder, course.gradebook, ASSIGNMENT, course.accounts["Ada"],
                    (due + timedelta(days=1)).replace(tzinfo=UTC), "prof")
    assert granted.after.penalty == 8
    course.drain()
    course.drain()
    assert course.lms_scores() == {"Ada": 72, "Bob": 90}
    posts = [p for p in platform.score_posts if p["course"] == course.id]
    assert [p["scoreGiven"] for p in posts[2:]] == [72]
    # The same extension again changes nothing, and nothing is posted.
    grant(course.folder, course.gradebook, ASSIGNMENT, course.accounts["Ada"],
          (due + timedelta(days=1)).replace(tzinfo=UTC), "prof")
    course.drain()
    assert len([p for p in platform.score_posts if p["course"] == course.id]) == 3


def test_the_submission_time_goes_with_the_score_and_a_new_one_is_posted_once(course, platform):
    course.student("Ada", "Lovelace")
    course.grade("Ada", 80)
    submitted = datetime(2026, 12, 1, 11, 59, 30, 250000)
    with Gradebook(course.gradebook) as gb:
        gb.find_submission(ASSIGNMENT, course.accounts["Ada"]).timestamp = submitted
        gb.db.commit()
    course.drain()
    [post] = [p for p in platform.score_posts if p["course"] == course.id]
    # Not the time of the post (``timestamp``, when the score changed here): when she submitted.
    assert post["submission"] == {"submittedAt": "2026-12-01T11:59:30.250000+00:00"}
    assert post["timestamp"] != post["submission"]["submittedAt"]
    course.drain()
    assert len([p for p in platform.score_posts if p["course"] == course.id]) == 1
    # She submits again and gets the same score: the LMS is told the new time, once.
    with Gradebook(course.gradebook) as gb:
        gb.find_submission(ASSIGNMENT, course.accounts["Ada"]).timestamp = submitted + timedelta(hours=2)
        gb.db.commit()
    course.drain()
    course.drain()
    posts = [p for p in platform.score_posts if p["course"] == course.id]
    assert [(p["scoreGiven"], p["submission"]["submittedAt"]) for p in posts[1:]] == [
        (80, "2026-12-01T13:59:30.250000+00:00")]


def test_scores_posted_before_the_submission_time_was_sent_are_not_posted_again_for_it(course, platform):
    """An outbox from before the ``submitted_at`` column: the column is added and nothing is posted twice."""
    from sqlalchemy import text

    course.student("Ada", "Lovelace")
    course.grade("Ada", 80)
    with Gradebook(course.gradebook) as gb:
        gb.find_submission(ASSIGNMENT, course.accounts["Ada"]).timestamp = datetime(2026, 12, 1, 11)
        gb.db.commit()
    course.drain()
    with course.engine.begin() as db:
        db.execute(text("ALTER TABLE lms_outbox DROP COLUMN submitted_at"))
    course.engine.dispose()
    course.engine = lms_engine(f"sqlite:///{course.folder / 'grade_on_submit' / 'queue.sqlite'}")
    course.outbox = Outbox(course.engine, max_backoff=0.5)
    course.reconciler = Reconciler(course.engine, course.outbox, course.gradebook,
                                   course.folder / "grade_on_submit.json", settle=0, binding=course.binding)
    [row] = course.outbox.rows((POSTED,))
    assert row.submitted_at is None
    course.drain()
    assert len([p for p in platform.score_posts if p["course"] == course.id]) == 1
    course.grade("Ada", 90)
    course.drain()
    last = [p for p in platform.score_posts if p["course"] == course.id][-1]
    assert last["scoreGiven"] == 90 and "submittedAt" in last["submission"]


def test_a_regrade_applied_posts_each_moved_score_once_and_nothing_for_the_others(course, platform):
    """Apply's switch of the gradebook (the notebook's run and feedback are test_regrade_course's), resumed once."""
    from hub.grade_on_submit.queue import Queue
    from hub.grade_on_submit.regrade_apply import StudentSwitch
    from hub.grade_on_submit.regrade_plan import scores_from
    from hub.grade_on_submit.regrade_store import APPLIED, PREVIEWED, UNCHANGED, RegradeRecords, RegradeTasks

    class GradebookOnly(StudentSwitch):
        def follow(self, old_total: float, new_total: float) -> str:
            return "feedback left as it is"

    course.student("Ada", "Lovelace")
    course.student("Bob", "Builder")
    course.grade("Ada", 60)
    course.grade("Bob", 100)
    course.drain()
    assert course.lms_scores() == {"Ada": 60, "Bob": 100}
    ada, bob = course.accounts["Ada"], course.accounts["Bob"]
    for account in (ada, bob):
        (course.folder / "submitted" / account / ASSIGNMENT).mkdir(parents=True)
        (course.folder / "submitted" / account / ASSIGNMENT / "timestamp.txt").write_text("t1")

    def scores(points: float) -> dict:
        found = scores_from([("all", points, 100.0)], {}, 0.0)
        found["cells"]["all"]["auto"] = points
        return found

    records, tasks = RegradeRecords(course.engine), RegradeTasks(course.engine)
    regrade_id = records.create(ASSIGNMENT, "prof", "everyone", False,
                                [(ada, "t1", scores(60)), (bob, "t1", scores(100))])
    for _ in range(2):
        row = tasks.claim("w", 30)
        tasks.finish(row, "w", PREVIEWED, new=scores(80 if row.student == ada else 100))
    records.apply(regrade_id, "prof")
    for _ in range(2):
        row = tasks.claim("w", 30)
        switch = GradebookOnly(course.folder, course.gradebook, Queue(course.engine), records.get(regrade_id), row)
        state, _ = switch.run()
        if row.student == ada:
            # Run again, as a worker taking over after a kill -9 would: the same gradebook, nothing more to post.
            switch.run()
        tasks.finish(row, "w", state)
        course.drain()
    assert {r.student: r.state for r in records.students(regrade_id)} == {ada: APPLIED, bob: UNCHANGED}
    assert course.lms_scores() == {"Ada": 80, "Bob": 100}
    posts = [p for p in platform.score_posts if p["course"] == course.id]
    assert [p["scoreGiven"] for p in posts[2:]] == [80]
