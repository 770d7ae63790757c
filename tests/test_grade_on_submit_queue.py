"""The grading-on-submit queue, policy and views, without a hub: exactly once, leases, the cap, what students see."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from grader.course import ROOT
from hub.grade_on_submit import views
from hub.grade_on_submit.inbox import parse_name
from hub.grade_on_submit.policy import Policy, PolicyError, PolicyFile, parse
from hub.grade_on_submit.queue import FAILED, GRADED, GRADING, MAX_ATTEMPTS, QUEUED, SUPERSEDED, Queue, open_engine


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(tmp_path, clock) -> Queue:
    return Queue(open_engine(f"sqlite:///{tmp_path / 'queue.sqlite'}"), clock=clock)


def folder(student: str, stamp: str) -> str:
    return f"{student}+hw+{stamp}+r4nd0m"


def finish(queue: Queue, row, **outcome) -> bool:
    """``row``'s worker records ``outcome`` for the attempt it claimed."""
    return queue.finish(row.id, row.worker, row.attempts, **outcome)


def test_a_submission_is_queued_once_however_often_it_is_found(queue):
    assert queue.add(folder("ann", "t1"), "ann", "hw", "t1", None)
    assert not queue.add(folder("ann", "t1"), "ann", "hw", "t1", None)
    assert [r.state for r in queue.all()] == [QUEUED]


def test_a_claimed_submission_is_not_claimed_again_while_its_lease_lives(queue, clock):
    queue.add(folder("ann", "t1"), "ann", "hw", "t1", None)
    row = queue.claim("w1", lease=30)
    assert row is not None and row.state == GRADING and row.attempts == 1
    assert queue.claim("w2", lease=30) is None
    clock.now += 10
    assert queue.renew(row.id, "w1", row.attempts, 30)
    clock.now += 25  # 35 s after the claim, but renewed at 10 s
    assert queue.claim("w2", lease=30) is None


def test_a_dead_workers_submission_is_graded_again_and_only_the_new_worker_may_finish_it(queue, clock):
    queue.add(folder("ann", "t1"), "ann", "hw", "t1", None)
    first = queue.claim("w1", lease=30)
    clock.now += 31  # w1 was killed: no renewal
    second = queue.claim("w2", lease=30)
    assert second is not None and second.id == first.id and second.attempts == 2
    assert not queue.renew(first.id, "w1", first.attempts, 30)
    assert not queue.finish(first.id, "w1", first.attempts, state=GRADED, score=1.0)
    assert queue.finish(second.id, "w2", second.attempts, state=GRADED, score=100.0, max_score=100.0)
    [row] = queue.all()
    assert (row.state, row.score, row.worker) == (GRADED, 100.0, "w2")


def test_a_submission_that_kills_every_worker_fails_with_a_reason(queue, clock):
    queue.add(folder("ann", "t1"), "ann", "hw", "t1", None)
    for attempt in range(MAX_ATTEMPTS):
        assert queue.claim(f"w{attempt}", lease=30) is not None
        clock.now += 31
    assert queue.claim("last", lease=30) is None
    [row] = queue.all()
    assert row.state == FAILED and f"stopped {MAX_ATTEMPTS} times" in row.reason
    assert "does not count" in row.reason


def test_one_students_submissions_are_graded_one_at_a_time_in_order(queue):
    queue.add(folder("ann", "t1"), "ann", "hw", "t1", None)
    first = queue.claim("w1", lease=30)
    queue.add(folder("ann", "t2"), "ann", "hw", "t2", None)
    queue.add(folder("bob", "t3"), "bob", "hw", "t3", None)
    other = queue.claim("w2", lease=30)
    assert other.student == "bob"  # ann's second waits for her first
    assert queue.claim("w3", lease=30) is None
    finish(queue, first, state=GRADED)
    assert queue.claim("w3", lease=30).timestamp == "t2"


def test_a_later_submission_supersedes_one_still_waiting(queue):
    queue.add(folder("ann", "t1"), "ann", "hw", "t1", None)
    queue.add(folder("ann", "t2"), "ann", "hw", "t2", None)
    states = {r.timestamp: r.state for r in queue.all()}
    assert states == {"t1": SUPERSEDED, "t2": QUEUED}
    assert "t2" in queue.all((SUPERSEDED,))[0].reason


def test_the_cap_delays_a_grading_until_the_hour_allows_it(queue, clock):
    start = clock.now
    queue.add(folder("ann", "t1"), "ann", "hw", "t1", per_hour=2)
    finish(queue, queue.claim("w", 30), state=GRADED)
    clock.now += 600
    queue.add(folder("ann", "t2"), "ann", "hw", "t2", per_hour=2)
    finish(queue, queue.claim("w", 30), state=GRADED)
    clock.now += 600
    queue.add(folder("ann", "t3"), "ann", "hw", "t3", per_hour=2)
    [waiting] = queue.all((QUEUED,))
    assert waiting.not_before == start + 3600  # when the first grading leaves the hour
    assert queue.claim("w", 30) is None
    # Another student is not held up.
    queue.add(folder("bob", "t4"), "bob", "hw", "t4", per_hour=2)
    bob = queue.claim("w", 30)
    assert bob.student == "bob"
    finish(queue, bob, state=GRADED)
    clock.now = start + 3600
    assert queue.claim("w", 30).timestamp == "t3"


def test_a_failed_grading_does_not_count_against_the_cap(queue, clock):
    queue.add(folder("ann", "t1"), "ann", "hw", "t1", per_hour=1)
    first = queue.claim("w", 30)
    queue.add(folder("ann", "t2"), "ann", "hw", "t2", per_hour=1)
    assert queue.all((QUEUED,))[0].not_before > clock.now  # waits for the hour
    finish(queue, first, state=FAILED, reason="could not be read")
    assert queue.all((QUEUED,))[0].not_before == clock.now  # the failed one freed its slot
    assert queue.claim("w", 30).timestamp == "t2"


def test_a_grading_that_used_its_whole_time_budget_counts_against_the_cap(queue, clock, monkeypatch):
    """Ended by the grading's time budget, a submission is graded with what ran: it takes its slot in the hour."""
    from grader.engine.grading import CourseSetup
    from grader.engine.record import CellResult, GradingResult
    from hub.grade_on_submit import pipeline

    spent = ("the grading's time budget of 120 s for your whole notebook was used up, most of it by cell 26 "
             "(`time.sleep(10**6)`), which ran for 60 s until it was stopped")
    result = GradingResult(student="ann", assignment="hw", ok=True, out_of_time=spent,
                           cells=(CellResult("test_a", "a", 30.0, 30.0, True, "Passed"),
                                  CellResult("test_b", "b", 0.0, 70.0, False, "b is not defined")))
    monkeypatch.setattr(pipeline, "collect", lambda setup, row: None)
    monkeypatch.setattr(pipeline, "grade_submission", lambda setup, student: result)
    monkeypatch.setattr(pipeline, "generate_feedback", lambda setup, row: None)
    monkeypatch.setattr(pipeline, "due_date", lambda setup: None)
    monkeypatch.setattr(pipeline, "submission_lateness", lambda setup, student: (None, None))  # no due date
    monkeypatch.setattr(pipeline, "release_feedback", lambda setup, student: None)
    queue.add(folder("ann", "t1"), "ann", "hw", "t1", per_hour=1)
    row = queue.claim("w", 30)
    outcome = pipeline.grade(CourseSetup("/nowhere", "sqlite://", "hw"), row, "feedback")
    assert (outcome.state, outcome.score, outcome.max_score) == (GRADED, 30.0, 100.0)
    finish(queue, row, state=outcome.state, score=outcome.score, max_score=outcome.max_score, reason=outcome.reason)
    # Her page says which cell used the time.
    [shown] = [views.for_student(r, Policy(True, "feedback"), None) for r in queue.of_student("ann")]
    assert shown["score"] == 30.0 and "most of it by cell 26" in shown["reason"]
    clock.now += 60
    queue.add(folder("ann", "t2"), "ann", "hw", "t2", per_hour=1)
    assert queue.all((QUEUED,))[0].not_before == row.started_at + 3600
    assert queue.claim("w", 30) is None


def _claim_all(url: str, worker: str, results) -> None:
    queue = Queue(open_engine(url))
    while (row := queue.claim(worker, lease=600)) is not None:
        queue.finish(row.id, worker, row.attempts, state=GRADED)
        results.put((row.id, worker))


@pytest.fixture(params=["sqlite", "postgresql"])
def queue_url(request, tmp_path):
    """The queue on one machine (SQLite) and on a server several machines share (PostgreSQL)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'queue.sqlite'}"
        return
    from tests.postgres import postgres_server

    with postgres_server("grading_queue") as url:
        yield url


def test_workers_in_separate_processes_claim_each_submission_exactly_once(queue_url):
    url = queue_url
    queue = Queue(open_engine(url))
    for i in range(60):
        queue.add(folder(f"s{i}", f"t{i}"), f"s{i}", "hw", f"t{i}", None)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [context.Process(target=_claim_all, args=(url, f"w{n}", results)) for n in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    claimed = [results.get(timeout=5) for _ in range(60)]
    assert results.empty()
    assert sorted(i for i, _ in claimed) == sorted(r.id for r in queue.all())
    assert all(r.state == GRADED and r.attempts == 1 for r in queue.all())


def test_the_policy_file_names_what_is_wrong(tmp_path):
    assert parse('{"hw": {"grade_on_submit": true, "show": "score", "per_hour": 3}}', "p.json") == {
        "hw": Policy(True, "score", 3)}
    for text, expected in [
        ("{", "p.json is not valid JSON"),
        ('{"hw": {"show": "all"}}', "p.json, assignment 'hw': show must be one of feedback, score, nothing"),
        ('{"hw": {"per_hour": -1}}', "per_hour must be a whole number"),
        ('{"hw": {"grade_on_submit": "yes"}}', "grade_on_submit must be true or false"),
        ('{"hw": {"grade_on_sumbit": true}}', "unknown key(s) grade_on_sumbit"),
    ]:
        with pytest.raises(PolicyError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            parse(text, "p.json")
    path = tmp_path / "grade_on_submit.json"
    path.write_text('{"hw": {"grade_on_submit": true}}')
    policies = PolicyFile(path)
    policies.refresh()
    assert policies.of("hw").grade_on_submit and not policies.of("other").grade_on_submit
    path.write_text('{"hw": {"grade_on_submit": "on"}}  ')  # a bad edit keeps the last good policy
    policies.refresh()
    assert policies.of("hw").grade_on_submit and "previous policy stays in force" in policies.problem


def test_a_submission_folder_is_read_as_nbgrader_reads_it():
    found = parse_name("jo+ann+hw+2026-11-29 16:24:22.827930 UTC+IUrwZo7ikYwH")
    assert (found.student, found.assignment, found.timestamp) == ("jo+ann", "hw", "2026-11-29 16:24:22.827930 UTC")
    assert parse_name("not-a-submission") is None


@pytest.mark.parametrize("show, due, score, feedback", [
    ("feedback", None, True, True),
    ("score", None, True, False),
    ("nothing", None, False, False),
    ("nothing", datetime(2000, 1, 1, tzinfo=UTC), True, True),  # past the due date: everything
    ("score", datetime(2999, 1, 1, tzinfo=UTC), True, False),
])
def test_a_student_sees_what_the_policy_shows(queue, show, due, score, feedback):
    queue.add(folder("ann", "t1"), "ann", "hw", "t1", None)
    finish(queue, queue.claim("w", 30), state=GRADED, score=85.0, max_score=100.0)
    [row] = queue.of_student("ann")
    shown = views.for_student(row, Policy(True, show, 0), due)
    assert (shown["score"] is not None, shown["feedback"]) == (score, feedback)
    assert "worker" not in shown and "phases" not in shown
    if not feedback:
        assert shown["note"].startswith("Graded. The ")
    assert queue.of_student("bob") == []


def test_a_student_over_the_cap_is_told_when_the_grading_will_be(queue, clock):
    for stamp in ("t1", "t2"):
        queue.add(folder("ann", stamp), "ann", "hw", stamp, per_hour=1)
        if stamp == "t1":
            finish(queue, queue.claim("w", 30), state=GRADED)
    waiting = queue.of_student("ann")[0]
    note = views.for_student(waiting, Policy(True, "feedback", 1), None, now=clock.now)["note"]
    assert "1 grading(s) in the last hour" in note and views.clock_time(clock.now + 3600) in note


def test_an_unknown_assignment_is_not_graded_on_submit(tmp_path):
    policies = PolicyFile(Path(tmp_path / "missing.json"))
    policies.refresh()
    assert policies.of("hw") == Policy() and not Policy().grade_on_submit and policies.problem is None


def test_students_are_told_which_assignments_are_graded_on_submit_and_what_they_will_see():
    summary = views.policy_summary({"hw": Policy(True, "score", 3), "lab": Policy(False)})
    assert summary == ("hw is graded on submit: you will see your score (the feedback after the due date); "
                       "at most 3 grading(s) an hour. lab is not graded on submit.")
    assert views.policy_summary({}) == "No assignment is graded on submit at the moment."


def test_a_submission_is_queued_only_once_nbgrader_has_written_all_of_it(tmp_path):
    from hub.grade_on_submit.inbox import settled

    stamp = "2026-11-29 16:24:22.827930 UTC"
    (tmp_path / "unet.ipynb").write_text("{}")
    assert not settled(tmp_path, stamp)
    (tmp_path / "timestamp.txt").write_text(stamp)
    assert not settled(tmp_path, stamp)  # the secret, which feedback needs, comes last
    (tmp_path / "submission_secret.txt").write_text("ab" * 64)
    assert settled(tmp_path, stamp)
    (tmp_path / "timestamp.txt").write_text("2026-11-29 16:24:23.000000 UTC")
    assert not settled(tmp_path, stamp)


def test_a_live_lease_is_not_taken_over_and_an_expired_one_cannot_be_renewed(queue, clock):
    queue.add(folder("ann", "t1"), "ann", "hw", "t1", None)
    first = queue.claim("w1", lease=30)
    clock.now += 29
    assert queue.claim("w2", lease=30) is None
    clock.now += 2  # w1 missed its renewals: the lease ran out
    assert not queue.renew(first.id, "w1", first.attempts, 30)
    second = queue.claim("w2", lease=30)
    assert second.id == first.id
    assert not finish(queue, first, state=GRADED)


class StaleQueue(Queue):
    """A queue whose first look for work is stale: it misses that a student's other submission was just claimed."""

    stale = True

    def _candidate(self, db, now):
        if self.stale:
            self.stale = False
            return next(r for r in self.all() if r.timestamp == "t2")
        return super()._candidate(db, now)


def test_a_student_is_never_graded_twice_at_once_even_from_a_stale_read(queue_url, clock):
    url = queue_url
    queue = Queue(open_engine(url), clock=clock)
    queue.add(folder("ann", "t1"), "ann", "hw", "t1", None)
    queue.claim("w1", lease=30)  # then killed
    queue.add(folder("ann", "t2"), "ann", "hw", "t2", None)  # not superseded: t1 is being graded
    clock.now += 31
    assert queue.claim("w2", lease=30).timestamp == "t1"
    assert StaleQueue(open_engine(url), clock=clock).claim("w3", lease=30) is None
    assert [r.state for r in queue.all()] == [GRADING, QUEUED]


def test_a_submission_given_up_on_frees_its_slot(queue, clock):
    queue.add(folder("ann", "t1"), "ann", "hw", "t1", per_hour=1)
    queue.claim("w1", lease=30)
    queue.add(folder("ann", "t2"), "ann", "hw", "t2", per_hour=1)
    assert queue.all((QUEUED,))[0].not_before > clock.now + 3000
    for attempt in range(MAX_ATTEMPTS):
        clock.now += 31
        row = queue.claim(f"w{attempt + 2}", lease=30)
        if attempt < MAX_ATTEMPTS - 1:
            assert row.timestamp == "t1"
    # The third expiry gives t1 up; t2 no longer waits for the hour.
    assert row is not None and row.timestamp == "t2"
    assert queue.all((FAILED,))[0].timestamp == "t1"


def test_a_submission_replaced_by_one_that_fails_is_graded_after_all(queue):
    queue.add(folder("ann", "t1"), "ann", "hw", "t1", None)
    queue.add(folder("ann", "t2"), "ann", "hw", "t2", None)
    later = queue.claim("w", 30)
    assert later.timestamp == "t2"
    finish(queue, later, state=FAILED, reason="The submission was not accepted: unet.ipynb is a link.")
    again = queue.claim("w", 30)
    assert again.timestamp == "t1" and again.attempts == 1


def test_a_pipe_or_a_link_in_a_submission_never_blocks_or_misleads_the_service(tmp_path):
    from hub.grade_on_submit.inbox import settled

    stamp = "2026-11-29 16:24:22.827930 UTC"
    os.mkfifo(tmp_path / "timestamp.txt")
    (tmp_path / "submission_secret.txt").write_text("ab" * 64)
    assert not settled(tmp_path, stamp)  # returns at once instead of waiting on the pipe
    os.unlink(tmp_path / "timestamp.txt")
    elsewhere = tmp_path.parent / f"{tmp_path.name}-stamp"
    elsewhere.write_text(stamp)
    os.symlink(elsewhere, tmp_path / "timestamp.txt")
    assert not settled(tmp_path, stamp)
    linked = tmp_path.parent / f"{tmp_path.name}-link"
    os.symlink(tmp_path, linked)
    (tmp_path / "timestamp.txt").unlink()
    (tmp_path / "timestamp.txt").write_text(stamp)
    assert settled(tmp_path, stamp) and not settled(linked, stamp)


def test_what_students_see_outlives_the_assignment_leaving_the_policy_file(queue):
    queue.add(folder("ann", "t1"), "ann", "hw", "t1", None)
    row = queue.claim("w", 30)
    finish(queue, row, state=GRADED, score=80.0, max_score=100.0, show="nothing")
    [graded] = queue.of_student("ann")
    assert views.for_student(graded, None, None)["score"] is None
    assert views.for_student(graded, Policy(False, "feedback"), None)["feedback"] is True


def test_only_graded_submissions_whose_feedback_is_held_wait_for_release(queue):
    for student in ("ann", "bob", "cat"):
        queue.add(folder(student, "t1"), student, "hw", "t1", None)
    finish(queue, queue.claim("w", 30), state=GRADED, released=True)
    finish(queue, queue.claim("w", 30), state=GRADED, released=False)
    finish(queue, queue.claim("w", 30), state=FAILED)
    [held] = queue.unreleased()
    assert held.student == "bob"
    queue.mark_released([held.id])
    assert queue.unreleased() == []


def test_held_feedback_is_released_after_each_students_own_due_date(queue, tmp_path):
    """An extension keeps that student's feedback back; the others' is released one by one meanwhile."""
    from datetime import timedelta

    from hub.grade_on_submit.extensions import record, recorded_dates
    from hub.grade_on_submit.release_due import releases_due

    for student in ("ann", "bob", "cat"):
        queue.add(folder(student, "t1"), student, "hw", "t1", None)
        finish(queue, queue.claim("w", 30), state=GRADED, score=80.0, max_score=100.0, show="nothing")
    ids = {r.student: r.id for r in queue.unreleased()}
    due = datetime(2026, 12, 1, 12, tzinfo=UTC)
    record(tmp_path, "hw", "bob", due + timedelta(days=2), by="prof")
    record(tmp_path, "hw", "cat", due + timedelta(hours=1), by="prof")
    own = recorded_dates(tmp_path)
    assert own == {"hw": {"bob": due + timedelta(days=2), "cat": due + timedelta(hours=1)}}

    def at(moment: datetime) -> list[tuple[str | None, tuple[int, ...]]]:
        return [(r.student, r.ids) for r in releases_due(queue.unreleased(), lambda a: due, own, moment)]

    assert at(due - timedelta(seconds=1)) == []
    assert at(due) == [("ann", (ids["ann"],))]  # cat's and bob's own due dates are later
    [ann] = releases_due(queue.unreleased(), lambda a: due, own, due)
    assert ann.command()[-4:] == ["release_feedback", "hw", "--student", "ann"]
    queue.mark_released(list(ann.ids))
    assert at(due + timedelta(hours=1)) == [("cat", (ids["cat"],))]  # bob still waits: nobody else's at once
    queue.mark_released([ids["cat"]])
    # Once nobody's own due date is still to come, one nbgrader call releases the assignment.
    [everyone] = releases_due(queue.unreleased(), lambda a: due, own, due + timedelta(days=2))
    assert (everyone.student, everyone.ids) == (None, (ids["bob"],))
    assert everyone.command()[-2:] == ["release_feedback", "hw"]
    # No due date at all: the feedback waits for the instructor's own release.
    assert releases_due(queue.unreleased(), lambda a: None, {}, due) == []


def test_a_worker_dates_the_checks_it_holds_from_when_its_process_began():
    """A regrade stops workers that began before it; one that began earlier but was slow to start stops too."""
    before = time.time()
    program = ("import time\nfirst = time.time()\ntime.sleep(0.5)\n"
               "from hub.grade_on_submit.worker import process_started\nprint(first, process_started())")
    out = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, check=True)
    first, began = map(float, out.stdout.split())
    # Clock ticks are 10 ms long; the process began after this test asked for it and before its first line ran.
    assert before - 0.02 <= began <= first + 0.02
