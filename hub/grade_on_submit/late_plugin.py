"""The course's late penalty inside nbgrader: autograde (batch and on submit) and recomputing after an extension.

``nbgrader_config.py`` names ``AssignCoursePenalties`` in place of nbgrader's
``AssignLatePenalties`` and ``CoursePenalty`` as its plugin: before nbgrader
computes how late a submission is, the student's recorded due date
(``hub.grade_on_submit.extensions``) is copied into the gradebook's
extension; the penalty itself is ``late_policy.penalty`` with the
assignment's policy from ``grade_on_submit.json`` in the course folder.
"""

from __future__ import annotations

from pathlib import Path

from nbgrader.plugins import LateSubmissionPlugin
from nbgrader.preprocessors import AssignLatePenalties
from traitlets import Type

from hub.grade_on_submit.extensions import apply_to_gradebook
from hub.grade_on_submit.late_policy import LatePolicy, penalty
from hub.grade_on_submit.policy import FILE_NAME, PolicyError, PolicyFile

# One per policy file in this process: a bad edit keeps the last good policy, as in the grading service.
_FILES: dict[Path, PolicyFile] = {}


def course_root_of(config) -> Path:
    """The course folder nbgrader runs in (``CourseDirectory.root``; the working directory by default)."""
    root = config.CourseDirectory.get("root") if "CourseDirectory" in config else None
    return Path(root or ".").resolve()


def late_policy(course_root: Path, assignment: str) -> LatePolicy:
    """The late policy of ``assignment`` in the course's policy file (the last good one if it went bad)."""
    path = Path(course_root) / FILE_NAME
    policies = _FILES.setdefault(path, PolicyFile(path))
    policies.refresh()
    if policies.problem and not policies.policies:
        # A batch run with no earlier good policy cannot guess the penalty: it stops with the file's problem.
        raise PolicyError(policies.problem)
    return policies.of(assignment).late


class CoursePenalty(LateSubmissionPlugin):
    """nbgrader's late-penalty plugin for this course: the assignment's policy in ``grade_on_submit.json``."""

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float | None:
        policy = late_policy(course_root_of(self.config), self.parent.assignment_id)
        taken = penalty(policy, score or 0.0, total_seconds_late)
        self.log.info("late penalty for %s: %s points (%s s late)", student_id, taken, total_seconds_late)
        return taken or None


class AssignCoursePenalties(AssignLatePenalties):
    """nbgrader's step, after the student's recorded due date has reached the gradebook."""

    plugin_class = Type(CoursePenalty, klass=LateSubmissionPlugin).tag(config=True)

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook

        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            apply_to_gradebook(gb, course_root_of(self.config), info["assignment"], info["student"])
        return super().preprocess(nb, resources)


def recompute(gb, course_root: Path, assignment: str, student: str) -> float | None:
    """Apply the recorded due date and the policy again to ``student``'s graded submission; the new penalty.

    What ``AssignCoursePenalties`` does in an autograde, without running the
    notebook again (an extension granted after grading).  None: no submission.
    """
    from nbgrader.api import MissingEntry

    if not apply_to_gradebook(gb, course_root, assignment, student):
        return None
    policy = late_policy(course_root, assignment)
    submission = gb.find_submission(assignment, student)
    total = 0.0
    for notebook in submission.notebooks:
        try:
            score = float(notebook.score or 0.0)
        except MissingEntry:
            continue
        taken = min(penalty(policy, score, submission.total_seconds_late), score)
        notebook.late_submission_penalty = taken or None
        total += taken
    gb.db.commit()
    return total
