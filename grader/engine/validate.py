"""``nbgrader validate`` (and the Validate button) that always ends with a message.

nbgrader's validator runs the notebook with its own ``Execute`` step.  A
kernel that dies mid-notebook (``os._exit``, a crash, running out of memory)
makes that step raise, and the student reads a traceback of nbgrader's
internals, or a blank dialog.  ``ValidateExecute`` turns it, and a notebook
that uses up its whole time budget, into an error output on every graded cell
that did not run, saying which cell stopped the kernel and why; the
validator then reports those cells as failed like any other.  A kernel that
cuts its connections to Validate counts as dead (``kernel_sockets``).

The validator's list of steps is not configurable, so ``install`` puts this
step in place of nbgrader's (``private_api.nbgrader_api``);
``nbgrader_config.py`` calls it.
"""

from __future__ import annotations

import textwrap
from time import monotonic
from typing import Any

from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from nbgrader.utils import is_grade
from traitlets import Enum, Integer

from grader.engine.kernel_sockets import WatchedKernelManager
from grader.engine.private_api.nbgrader_api import replace_validator_step


def _error(ename: str, message: str) -> NotebookNode:
    # Short lines: `nbgrader validate` cuts every line at 90 characters.
    lines = textwrap.wrap(message, 80, break_long_words=False, break_on_hyphens=False)
    return NotebookNode(output_type="error", ename=ename, evalue=message, traceback=lines)


def _first_line(cell: NotebookNode) -> str:
    lines = [line for line in cell.source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return (lines[0].strip() if lines else "")[:60]


class ValidateExecute(Execute):
    """nbgrader's ``Execute`` for Validate: a dead kernel or a spent time budget becomes a message."""

    notebook_timeout = Integer(
        240, help="Seconds Validate may spend running the whole notebook; later cells are not run.").tag(config=True)
    shutdown_kernel = Enum(
        ["graceful", "immediate"], default_value="immediate",
        help="How the kernel ends after the last cell. Its outputs are in by then; a graceful shutdown "
             "waits for TensorFlow to tidy up, which took about 1.5 s of every Validate.").tag(config=True)

    _stopped: str | None = None
    _deadline = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # A kernel that cuts its connections is a dead kernel with a message, not a wait for lost output.
        # (nbgrader's Execute sets its own default here, so a traitlets default would not apply.)
        kwargs.setdefault("kernel_manager_class", WatchedKernelManager)
        super().__init__(*args, **kwargs)

    def preprocess(self, nb: NotebookNode, resources: dict, km: Any = None) -> tuple[NotebookNode, dict]:
        self._stopped, self._deadline = None, monotonic() + self.notebook_timeout
        try:
            return super().preprocess(nb, resources, km)
        except DeadKernelError:
            # Raised again while shutting the dead kernel down; every cell already has its message.
            return nb, resources

    def preprocess_cell(self, cell: NotebookNode, resources: dict, index: int) -> tuple[NotebookNode, dict]:
        if self._stopped is None and monotonic() > self._deadline:
            self._stopped = (f"Validate stopped after {self.notebook_timeout} s, before cell {index + 1}: "
                             "the notebook takes too long (is a cell stuck in a loop?)")
        if self._stopped is not None:
            if cell.cell_type == "code" and is_grade(cell):
                cell.outputs = [_error("NotRun", f"Not run: {self._stopped}.")]
            return cell, resources
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            lost = isinstance(self.km, WatchedKernelManager) and self.km.connection_lost() is not None
            why = "it closed or replaced the kernel's sockets" if lost else "os._exit, a crash or too little memory"
            self._stopped = (f"the Python kernel stopped while running the cell that begins `{_first_line(cell)}` "
                             f"({why}). Fix that cell, then restart the kernel and run all cells")
            cell.outputs.append(_error("DeadKernelError", f"This cell stopped the kernel: {self._stopped}."))
            return cell, resources


def install() -> None:
    """Make nbgrader's ``Validator`` run notebooks with ``ValidateExecute``."""
    replace_validator_step(Execute, ValidateExecute)
