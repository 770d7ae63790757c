"""Apply a previewed regrade to one student: from their old result to the new one, in steps that can be redone.

The student's row is ``applying`` (the journal) before the first step, and
each step leaves what one run leaves, so a worker killed anywhere is
followed by another that runs them all again:

1. ``current``: the student has not submitted since the preview, and no
   grading of theirs is waiting or running (else their new submission is,
   or will be, graded with the course as it is now, and it stands);
2. ``swap_autograded``: the private course's autograded notebook takes the
   live one's place (two renames; the old one is kept in the regrade's folder);
3. ``write_gradebook``: the new automatic scores and the late penalty again,
   in one commit: this is the switch that the LMS service sees, and it posts
   a changed score once (an unchanged one posts nothing);
4. ``follow``: the grading service's row (score and a note saying why it
   changed) and the feedback page, regenerated, and released under the
   assignment's policy.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from hub.grade_on_submit.queue import GRADED, GRADING, QUEUED, Queue, Submission
from hub.grade_on_submit.regrade_course import shadow_root, stored_timestamp
from hub.grade_on_submit.regrade_plan import decision, diff
from hub.grade_on_submit.regrade_store import APPLIED, FAILED, KEPT, SKIPPED, UNCHANGED, Regrade, StudentRow


class StudentSwitch:
    """The steps that move one student of one regrade from the old result to the new one."""

    def __init__(self, course_root: Path, gradebook_url: str, queue: Queue, regrade: Regrade, row: StudentRow):
        self.course_root, self.gradebook_url, self.queue = Path(course_root), gradebook_url, queue
        self.regrade, self.row = regrade, row
        self.assignment, self.student = regrade.assignment, row.student

    def run(self) -> tuple[str, str | None]:
        """Apply; the row's final state and a note for the record."""
        if self.row.new is None or self.row.old is None:
            return FAILED, "there is no preview to apply"
        change = diff(self.student, self.row.old, self.row.new)
        what = decision(change, self.regrade.never_lower)
        if what == "unchanged":
            return UNCHANGED, None
        if what == "kept":
            return KEPT, f"kept at {change.old_total:g}: the new result, {change.new_total:g}, is lower"
        moved_on = self.moved_on()
        if moved_on:
            return SKIPPED, moved_on
        self.swap_autograded()
        self.write_gradebook()
        return APPLIED, self.follow(change.old_total, change.new_total)

    def moved_on(self) -> str | None:
        """Why the student is left as they are: they submitted again since the preview (None: they did not)."""
        if stored_timestamp(self.course_root, self.student, self.assignment) != self.row.submitted:
            return "submitted again since the preview: that submission is graded with the course as it is now"
        busy = [r for r in self.queue.of_student(self.student)
                if r.assignment == self.assignment and r.state in (QUEUED, GRADING)]
        if busy:
            return "a new submission is being graded with the course as it is now; it stands"
        return None

    def swap_autograded(self) -> None:
        from grader.course import step_folder

        shadow = shadow_root(self.course_root, self.regrade.id)
        new = shadow / "autograded" / self.student / self.assignment
        live = step_folder(self.course_root, "autograded") / self.student / self.assignment
        kept = shadow / "replaced" / self.student / self.assignment
        if not new.exists():
            return  # swapped by an earlier attempt
        if live.exists():
            if kept.exists():
                shutil.rmtree(kept)
            kept.parent.mkdir(parents=True, exist_ok=True)
            live.rename(kept)
        live.parent.mkdir(parents=True, exist_ok=True)
        new.rename(live)

    def write_gradebook(self) -> None:
        from nbgrader.api import Gradebook

        from hub.grade_on_submit.late_plugin import recompute

        cells = self.row.new["cells"] if self.row.new else {}
        with Gradebook(self.gradebook_url) as gb:
            for notebook in gb.find_submission(self.assignment, self.student).notebooks:
                for grade in notebook.grades:
                    if grade.name in cells and "auto" in cells[grade.name]:
                        grade.auto_score = cells[grade.name]["auto"]
            # The penalty of the new score, and the commit of everything above with it.
            recompute(gb, self.course_root, self.assignment, self.student)

    def follow(self, old_total: float, new_total: float) -> str:
        """The service's row and the feedback page after the switch; what was done, in words."""
        from hub.grade_on_submit import pipeline
        from hub.grade_on_submit.policy import PolicyFile
        from hub.grade_on_submit.settings import Settings

        setup = Settings(self.course_root, Path(), "", gradebook=self.gradebook_url).course_setup(self.assignment)
        when = datetime.fromtimestamp(self.regrade.applied_at or 0, UTC).strftime("%Y-%m-%d %H:%M UTC")
        said = (f"Regraded on {when} after a change to the course's checks: {old_total:g} -> {new_total:g} of "
                f"{self.row.new['max'] if self.row.new else 0:g}.")
        late, late_said = pipeline.submission_lateness(setup, self.student)
        row = self.latest_row()
        if row is not None:
            self.queue.rescore(row.id, late.score_after_penalty if late else new_total,
                               " ".join(filter(None, [late_said, said])))
            pipeline.generate_feedback(setup, row)
        else:
            generate_feedback_only(setup, self.student)
        policies = PolicyFile(self.course_root / "grade_on_submit.json")
        policies.refresh()  # a PolicyFile holds nothing until it has read the file
        policy = policies.entry(self.assignment)
        due = late.due if late is not None and late.due else pipeline.due_date(setup)
        # Released again where it was, or where the assignment's policy releases it now; an assignment the
        # policy file does not name releases its feedback by the instructor's own release_feedback.
        if (row is not None and row.released) or (policy is not None
                                                  and pipeline.shows_feedback_now(policy.show, due)):
            pipeline.release_feedback(setup, self.student)
            if row is not None:
                self.queue.mark_released([row.id])
            return f"{said} Feedback regenerated and released."
        return f"{said} Feedback regenerated, not released (the assignment's policy does not release it now)."

    def latest_row(self) -> Submission | None:
        """The service's latest graded row of the student (``moved_on`` made sure it is the one previewed)."""
        return next((r for r in self.queue.of_student(self.student)
                     if r.assignment == self.assignment and r.state == GRADED), None)


def generate_feedback_only(setup, student: str) -> None:
    """nbgrader's GenerateFeedback for a student graded in batch (no row of the grading service)."""
    from nbgrader.converters import GenerateFeedback

    from grader.engine.grading import nbgrader_app

    app = nbgrader_app(setup)
    app.coursedir.assignment_id, app.coursedir.student_id = setup.assignment, student
    converter = GenerateFeedback(coursedir=app.coursedir, parent=app)
    converter.force = True
    converter.start()
