"""What a student and an instructor are shown of the queue, as plain data (the pages render it).

A student sees only their own submissions, and of each only what the
assignment's policy allows before its due date.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from hub.grade_on_submit.policy import Policy
from hub.grade_on_submit.queue import FAILED, GRADED, GRADING, QUEUED, SUPERSEDED, Submission

LABELS = {QUEUED: "queued", GRADING: "grading", GRADED: "graded", FAILED: "could not be graded",
          SUPERSEDED: "replaced by a later submission"}


def clock_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def past_due(due: datetime | None, now: float) -> bool:
    return due is not None and now >= due.timestamp()


def for_student(row: Submission, policy: Policy | None, due: datetime | None, now: float | None = None) -> dict:
    """One of a student's submissions as they may see it now.

    ``policy`` is the assignment's policy now; when the policy file no longer
    names the assignment, what it showed when the submission was graded holds.
    """
    now = time.time() if now is None else now
    after_due = past_due(due, now)
    show = policy.show if policy is not None else (row.show or "nothing")
    shown: dict = {"id": row.id, "assignment": row.assignment, "submitted": row.timestamp, "state": row.state,
                   "label": LABELS[row.state], "queued_at": clock_time(row.queued_at),
                   "started_at": clock_time(row.started_at) if row.started_at else None,
                   "finished_at": clock_time(row.finished_at) if row.finished_at else None,
                   "reason": row.reason, "note": None, "score": None, "max_score": None, "feedback": False}
    if row.state == QUEUED and row.not_before > now:
        shown["note"] = (f"You have had {row.per_hour} grading(s) in the last hour, the most this assignment "
                         f"allows; this submission will be graded at {clock_time(row.not_before)}.")
    if row.state == GRADED:
        if show in ("feedback", "score") or after_due:
            shown["score"], shown["max_score"] = row.score, row.max_score
        if show == "feedback" or after_due:
            shown["feedback"] = True
        if not shown["feedback"]:
            when = f"after the due date, {clock_time(due.timestamp())}" if due else "when your instructor releases it"
            what = "feedback" if shown["score"] is not None else "score and feedback"
            shown["note"] = f"Graded. The {what} will be shown {when}."
    return shown


SHOWN = {"feedback": "your score and feedback", "score": "your score (the feedback after the due date)",
         "nothing": "that it was received (score and feedback after the due date)"}


def policy_summary(policies: dict[str, Policy]) -> str:
    """For students, one sentence per assignment: whether it is graded on submit, and what they will see."""
    parts = []
    for assignment, policy in sorted(policies.items()):
        if not policy.grade_on_submit:
            parts.append(f"{assignment} is not graded on submit.")
            continue
        cap = f"; at most {policy.per_hour} grading(s) an hour" if policy.per_hour else ""
        parts.append(f"{assignment} is graded on submit: you will see {SHOWN[policy.show]}{cap}.")
    return " ".join(parts) or "No assignment is graded on submit at the moment."


def for_instructor(row: Submission, now: float | None = None) -> dict:
    """One submission as the instructor sees it in the queue: everything, with the phases' times."""
    now = time.time() if now is None else now
    shown = row.as_json()
    shown["label"] = LABELS[row.state]
    shown["waiting_until"] = clock_time(row.not_before) if row.state == QUEUED and row.not_before > now else None
    shown["queued_at"] = clock_time(row.queued_at)
    return shown
