"""Before the first submission of a grading run: can this machine grade at all?

A sandbox that cannot start is the machine's fault, never a student's.  So
every way of grading (``nbgrader autograde``, the class grader, the hub, which
all go through nbgrader's ``Autograde`` converter) checks the machine once,
before nbgrader touches any student's files: the converter builds its
exporter (``intake.SubmissionExporter``) before the first submission, and
the exporter calls ``before_first_submission``.  When the check fails, the run
stops with one message saying what failed and how to fix it on this
platform; no score is written and no autograded notebook is removed.
"""

from __future__ import annotations

from typing import Any

from nbgrader.converters.base import NbGraderException

from grader.engine.sandbox import SandboxUnavailable, sweep_leftovers
from grader.engine.template_early import start_ahead

HEADLINE = "Grading cannot start on this machine; no submission was graded and no grade or file was changed."


class CannotGrade(NbGraderException):
    """This machine cannot grade in the sandbox; the message says why and what to do."""


def machine_problem(parent: Any = None) -> str | None:
    """Why this machine cannot grade with the settings of ``parent`` (an nbgrader converter or app), or None."""
    from grader.engine.execute import SandboxedExecute

    execute = SandboxedExecute(parent=parent)
    try:
        execute.check_machine()
    except SandboxUnavailable as err:
        return f"{HEADLINE}\n{err}"
    if execute.sandbox:
        # A grading service starting again after it was killed: its gradings' leftovers go now.
        sweep_leftovers(execute.whole_submission_limits)
    return None


def before_first_submission(parent: Any) -> None:
    """Log the machine's problem and raise ``CannotGrade``, which makes ``nbgrader autograde`` exit with 1.

    The kernel template starts first, importing while this process loads the
    grading steps (``template_early``).
    """
    start_ahead(parent)
    problem = machine_problem(parent)
    if problem is not None:
        parent.log.error(problem)
        raise CannotGrade(problem)
