"""What the LMS should show, read from nbgrader's gradebook, and the outbox rows that bring it there.

The gradebook is the one source of scores: grading on submit, a batch
``nbgrader autograde`` and a grader's manual grade in formgrader all end
there, and the reconciler compares it with the last score posted (or
waiting) for each student in each LMS course, every ``poll`` seconds.  A
change is added to the outbox once it has held for ``settle`` seconds (a
grading writes the gradebook in several steps) and no grading of that
student is running.

What is posted, for each assignment with a submission in the gradebook:
``scoreGiven`` (after the late penalty the gradebook holds, as the feedback
page shows it) and ``scoreMaximum`` in points; ``gradingProgress``
``FullyGraded``, or ``PendingManual`` while a grader still has cells to
grade; ``activityProgress`` ``Submitted`` until the due date (a student may
submit again) and ``Completed`` after it; and ``submission.submittedAt``,
the time of the submission that counts (nbgrader's timestamp of it), so
that the LMS shows when the student submitted rather than when the score was
posted (a regrade or an extension posts days later).  A new submission time
is posted even when the score stays.  With the policy ``show: nothing``
the LMS gets nothing until the due date.  nbgrader keeps the latest
submission of each student, so the latest submission counts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import and_, select
from sqlalchemy.engine import Engine

from hub.grade_on_submit.policy import PolicyFile
from hub.grade_on_submit.queue import GRADING, submissions
from hub.grade_on_submit.views import past_due
from hub.lms import roles
from hub.lms.binding import CourseBinding
from hub.lms.outbox import Key, Outbox, Score, score_of
from hub.lms.tables import enrolments


@dataclass(frozen=True)
class GradebookScore:
    account: str
    assignment: str
    score: float
    max_score: float
    needs_manual_grade: bool
    due: datetime | None
    submitted: datetime | None = None
    penalty: float = 0.0


def read_gradebook(gradebook_url: str) -> list[GradebookScore]:
    """Every submission's score in nbgrader's gradebook (one query per assignment)."""
    from nbgrader.api import Assignment, Gradebook, SubmittedAssignment

    found = []
    with Gradebook(gradebook_url) as gb:
        for assignment in gb.assignments:
            due = assignment.duedate.replace(tzinfo=UTC) if assignment.duedate else None
            # nbgrader's scores are before the late penalty, which it keeps beside them.
            penalties = dict(gb.db.query(SubmittedAssignment.id, SubmittedAssignment.late_submission_penalty)
                             .join(Assignment).filter(Assignment.name == assignment.name).all())
            for entry in gb.submission_dicts(assignment.name):
                penalty = float(penalties.get(entry["id"]) or 0.0)
                stamp = entry["timestamp"]
                submitted = stamp.replace(tzinfo=UTC) if isinstance(stamp, datetime) else None
                found.append(GradebookScore(entry["student"], assignment.name,
                                            round(max(0.0, float(entry["score"]) - penalty), 4),
                                            float(entry["max_score"]), bool(entry["needs_manual_grade"]), due,
                                            submitted, penalty))
    return found


def wanted(entry: GradebookScore, now: datetime) -> Score:
    past_due = entry.due is not None and now >= entry.due
    return Score(entry.score, entry.max_score, "Completed" if past_due else "Submitted",
                 "PendingManual" if entry.needs_manual_grade else "FullyGraded",
                 entry.submitted.isoformat(timespec="microseconds") if entry.submitted else None)


class Reconciler:
    """Adds to the outbox what the LMS does not have yet."""

    def __init__(self, engine: Engine, outbox: Outbox, gradebook_url: str, policy_path: Path,
                 settle: float = 2.0, clock=time.time, binding: CourseBinding | None = None):
        self.engine, self.outbox, self.gradebook_url, self.binding = engine, outbox, gradebook_url, binding
        self.policies, self.settle, self.clock = PolicyFile(policy_path), settle, clock
        self._seen: dict[Key, tuple[Score, float]] = {}

    def _targets(self) -> dict[str, list[tuple[str, str]]]:
        """account -> the bound LMS course (issuer, context), for each active student of it.

        Only the bound course: a student whom another LMS course also lists gets no grade there.
        """
        targets: dict[str, list[tuple[str, str]]] = {}
        if self.binding is None:
            return targets
        with self.engine.begin() as db:
            for row in db.execute(select(enrolments).where(and_(
                    enrolments.c.role == roles.STUDENT, enrolments.c.active.is_(True),
                    enrolments.c.issuer == self.binding.issuer,
                    enrolments.c.context_id == self.binding.context_id))):
                targets.setdefault(row.account, []).append((row.issuer, row.context_id))
        return targets

    def _grading_now(self) -> set[tuple[str, str]]:
        with self.engine.begin() as db:
            return {(r.student, r.assignment) for r in db.execute(
                select(submissions.c.student, submissions.c.assignment).where(submissions.c.state == GRADING))}

    def run_once(self) -> int:
        """Compare once; the number of scores added to the outbox."""
        self.policies.refresh()
        now = self.clock()
        today = datetime.fromtimestamp(now, UTC)
        targets, busy, added = self._targets(), self._grading_now(), 0
        for entry in read_gradebook(self.gradebook_url):
            policy = self.policies.of(entry.assignment)
            held_back = policy.show == "nothing" and not past_due(entry.due, now)
            if held_back or (entry.account, entry.assignment) in busy:
                continue
            score = wanted(entry, today)
            for issuer, context in targets.get(entry.account, []):
                key = Key(issuer, context, entry.account, entry.assignment)
                last = self.outbox.last(key)
                if last is not None and score.already(score_of(last)):
                    self._seen.pop(key, None)
                    continue
                seen, since = self._seen.get(key, (None, now))
                if seen != score:
                    self._seen[key] = (score, now)
                    if self.settle > 0:
                        continue
                elif now - since < self.settle:
                    continue
                self.outbox.enqueue(key, score)
                self._seen.pop(key, None)
                added += 1
        return added
