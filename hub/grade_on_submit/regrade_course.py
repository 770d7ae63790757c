"""The two courses a regrade compares: the live one's gradebook, and a private copy where the preview runs.

A preview must change nothing a student, the gradebook or the LMS can see,
so it grades in ``grade_on_submit/regrades/<id>/``: a course folder of its
own with the live course's source notebooks (a link: the course as it is
now), policy and due dates, a copy of the stored submission, and a
gradebook of its own that holds the assignment's cells as the live
gradebook has them now.  nbgrader's Autograde runs there exactly as it runs
on submit; the live course is only read.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from grader.course import NOTEBOOK, make_alembic_findable, step_folder
from hub.grade_on_submit.extensions import FILE_NAME as DUE_DATES
from hub.grade_on_submit.policy import FILE_NAME as POLICY
from hub.grade_on_submit.regrade_plan import cell_messages, scores_from

REGRADES = "grade_on_submit/regrades"


def shadow_root(course_root: Path, regrade_id: int) -> Path:
    """The private course folder of regrade ``regrade_id``."""
    return Path(course_root) / REGRADES / str(regrade_id)


def shadow_gradebook(shadow: Path) -> str:
    return f"sqlite:///{shadow / 'gradebook.db'}"


def stored_timestamp(course_root: Path, student: str, assignment: str) -> str | None:
    """The time of ``student``'s latest collected submission (its ``timestamp.txt``), or None."""
    try:
        return (step_folder(course_root, "submitted") / student / assignment / "timestamp.txt").read_text().strip()
    except OSError:
        return None


def autograded_notebook(course_root: Path, student: str, assignment: str) -> Path:
    return step_folder(course_root, "autograded") / student / assignment / f"{NOTEBOOK}.ipynb"


def live_scores(gradebook_url: str, course_root: Path, assignment: str) -> dict[str, dict[str, Any]]:
    """Every graded student's scores now (a grader's manual score counts, as in nbgrader), by student."""
    from nbgrader.api import Gradebook, MissingEntry

    found = {}
    with Gradebook(gradebook_url) as gb:
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            raise ValueError(f"the gradebook has no assignment {assignment!r}") from None
        for submission in gb.assignment_submissions(assignment):
            student = submission.student.id
            grades = [(g.name, float(g.score or 0.0), float(g.max_score)) for nb in submission.notebooks
                      for g in nb.grades if g.cell_type == "code"]
            messages = cell_messages(autograded_notebook(course_root, student, assignment))
            found[student] = scores_from(grades, messages, float(submission.late_submission_penalty or 0.0))
    return found


def graded_cells(gradebook_url: str, assignment: str) -> list[str]:
    from nbgrader.api import Gradebook

    with Gradebook(gradebook_url) as gb:
        return [c.name for nb in gb.find_assignment(assignment).notebooks for c in nb.grade_cells]


def make_shadow(course_root: Path, gradebook_url: str, assignment: str, regrade_id: int) -> Path:
    """The preview's course folder, with the live course's sources linked and its assignment's cells copied."""
    from nbgrader.api import Gradebook

    make_alembic_findable()
    shadow = shadow_root(course_root, regrade_id)
    shadow.mkdir(parents=True, exist_ok=True)
    for name in (step_folder(course_root, "source").name, POLICY, DUE_DATES):
        link = shadow / name
        if not link.is_symlink():
            link.symlink_to(Path(course_root).resolve() / name)
    with Gradebook(gradebook_url) as live, Gradebook(shadow_gradebook(shadow)) as copy:
        source = live.find_assignment(assignment)
        copy.update_or_create_assignment(assignment, duedate=source.duedate)
        for nb in source.notebooks:
            copy.update_or_create_notebook(nb.name, assignment)
            for cell in nb.grade_cells:
                copy.update_or_create_grade_cell(cell.name, nb.name, assignment, max_score=cell.max_score,
                                                 cell_type=cell.cell_type)
            for cell in nb.solution_cells:
                copy.update_or_create_solution_cell(cell.name, nb.name, assignment)
            for cell in nb.task_cells:
                copy.update_or_create_task_cell(cell.name, nb.name, assignment, max_score=cell.max_score,
                                                cell_type=cell.cell_type)
            for cell in nb.source_cells:
                copy.update_or_create_source_cell(cell.name, nb.name, assignment, cell_type=cell.cell_type,
                                                  locked=cell.locked, source=cell.source, checksum=cell.checksum)
    return shadow


def copy_submission(course_root: Path, shadow: Path, student: str, assignment: str) -> str:
    """The stored submission into the preview's course (afresh: a killed attempt may have left half a copy)."""
    source = step_folder(course_root, "submitted") / student / assignment
    target = shadow / "submitted" / student / assignment
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    return (target / "timestamp.txt").read_text().strip()
