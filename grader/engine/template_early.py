"""Start the kernel template while ``nbgrader autograde`` is still starting up itself.

A one-student ``nbgrader autograde`` did two slow things one after the
other: import TensorFlow for its own checks (when the grading steps load,
first in the machine check before the first submission), then start the
kernel template, which imports TensorFlow again in its sandbox.  The machine
check (``preflight.before_first_submission``) now first calls
``start_ahead``, which starts the template and lets it import
(``template.start_ahead``), so that the two imports run side by side.
Nothing else changes: it is the template the first kernel would have started
(the same sandbox view, found as ``grading.start_kernel_template`` finds
it), that kernel waits for it to be ready as before, and a submission's time
budget still begins only once it is.  Where the course turns the sandbox or
the template off, this does nothing; where a template cannot start, the
first kernel finds out, says why and starts cold, as it would have; a machine
that cannot grade stops the command as before, and the template with it.

This module imports neither TensorFlow nor the grading steps (which do): the
point is to start the template before they load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traitlets import Bool

from grader.engine.sandbox import SANDBOX_DEFAULT, find_data, start_template_ahead
from grader.engine.template import default_on

EARLY = "Kernel template starting while nbgrader loads the grading steps"


def forks_kernels(config: Any) -> bool:
    """Whether ``config`` (nbgrader's) runs kernels in the sandbox, forked from a template.

    The two ``SandboxedExecute`` settings, read as traitlets would read them
    (a value from the command line is still text here).
    """
    section = config.SandboxedExecute

    def setting(name: str, default: bool) -> bool:
        value = section.get(name, default)
        return Bool().from_string(value) if isinstance(value, str) else bool(value)

    return setting("sandbox", SANDBOX_DEFAULT) and setting("template", default_on())


def start_ahead(parent: Any) -> None:
    """Start the kernel template of ``parent``'s course (an nbgrader converter or app), without waiting for it.

    Without a parent (an exporter made on its own, to read a file) there is no course to grade: nothing starts.
    """
    if parent is None or not forks_kernels(parent.config):
        return
    coursedir = getattr(parent, "coursedir", None)
    course_root = Path(getattr(coursedir, "root", None) or Path.cwd())
    if start_template_ahead(find_data(course_root / "autograded")):
        parent.log.info(EARLY)
