"""What a student is told about lateness: on the feedback page, and beside the score in the grading service.

The sentence says when the submission arrived, the due date that applied
to the student (the assignment's, or theirs with an extension), how late
it was, the policy and the points taken off, so the student can check it.
"""

from __future__ import annotations

from datetime import datetime

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor

from hub.grade_on_submit.extensions import Lateness, lateness
from hub.grade_on_submit.late_plugin import course_root_of, late_policy
from hub.grade_on_submit.late_policy import LatePolicy, how_late


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def explain(late: Lateness, policy: LatePolicy, points: bool = True) -> str | None:
    """The sentence for ``late`` under ``policy``; None when there is nothing to say (no due date).

    Without ``points`` the penalty is given as a share of the score, for
    places that may show the sentence before the score may be shown.
    """
    if late.due is None or late.submitted is None:
        return None
    whose = "your due date"
    if late.extension and late.assignment_due is not None:
        whose = f"your due date with your extension (the assignment's is {_when(late.assignment_due)})"
    if late.seconds_late <= 0:
        return f"Submitted {_when(late.submitted)}, on time: {whose} is {_when(late.due)}."
    if not late.penalty:
        cost = "No points are taken off."
    elif points:
        cost = (f"{late.penalty:g} points are taken off, so the score is {late.score_after_penalty:g} of "
                f"{late.max_score:g} instead of {late.score:g}.")
    else:
        cost = f"The penalty takes {100 * late.penalty / late.score:.4g}% of the score off."
    return (f"Submitted {_when(late.submitted)}, {how_late(late.seconds_late)} late: {whose} is "
            f"{_when(late.due)}. {policy.describe()} {cost}")


class LatenessNote(NbGraderPreprocessor):
    """For ``generate_feedback``: the lateness sentence as the feedback page's first cell."""

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook

        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gb:
            late = lateness(gb, info["assignment"], info["student"])
        if late is not None:
            said = explain(late, late_policy(course_root_of(self.config), info["assignment"]))
            if said:
                cell = nbformat.v4.new_markdown_cell(f"**Due date and lateness.** {said}")
                cell.metadata["unet_lateness"] = True
                nb.cells.insert(0, cell)
        return nb, resources
