"""``nbgrader validate`` (and the Validate button) that always ends with a message.

nbgrader's validator runs the notebook with its own ``Execute`` step.  A
kernel that dies mid-notebook (``os._exit``, a crash, running out of memory)
makes that step raise, and the student reads a traceback of nbgrader's
internals, or a blank dialog.  ``ValidateExecute`` turns it, and a notebook
that uses up its whole time budget, into an error output on every graded cell
that did not run, saying which cell stopped the kernel and why; the
validator then reports those cells as failed like any other.  A kernel that
cuts its connections to Validate counts as dead (``kernel_sockets``).

With ``template`` on, the kernel is forked from this process's kernel
template, in the grading sandbox (``grader.engine.sandbox``), instead of
starting Python and TensorFlow from nothing: a process that validates many
notebooks (the hub's Validate, which keeps one such process per student
server while it is used; ``nbgrader validate a.ipynb b.ipynb ...``) pays for
the imports once.  It is off by default, because a process that validates
once gains nothing and a long-lived server would hold the template for good.

The validator's list of steps is not configurable, so ``install`` puts this
step in place of nbgrader's (``private_api.nbgrader_api``);
``nbgrader_config.py`` calls it.
"""

from __future__ import annotations

import os
import stat
import subprocess
import textwrap
from pathlib import Path
from time import monotonic
from typing import TYPE_CHECKING, Any

from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from nbgrader.utils import is_grade
from traitlets import Bool, Enum, Integer

from grader.engine.kernel_sockets import WatchedKernelManager
from grader.engine.private_api.nbgrader_api import replace_validator_step

if TYPE_CHECKING:
    from grader.engine.sandbox import SandboxedKernelManager


def _error(ename: str, message: str) -> NotebookNode:
    # Short lines: `nbgrader validate` cuts every line at 90 characters.
    lines = textwrap.wrap(message, 80, break_long_words=False, break_on_hyphens=False)
    return NotebookNode(output_type="error", ename=ename, evalue=message, traceback=lines)


def _first_line(cell: NotebookNode) -> str:
    lines = [line for line in cell.source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return (lines[0].strip() if lines else "")[:60]


# A folder Validate copies for a forked kernel holds at most this much (the sandbox's copy has 1 GiB), in
# at most this many files and folders; counting stops there.
COPY_BYTES = 256 * 2**20
COPY_ENTRIES = 2000


def _not_to_copy(folder: Path) -> str | None:
    """Why ``folder`` cannot be copied for each Validate (too big, or a file that is no plain file), or None."""
    size = entries = 0
    for where, dirs, files in os.walk(folder):
        entries += len(dirs) + len(files)
        if entries > COPY_ENTRIES:
            return f"it holds more than {COPY_ENTRIES} files and folders"
        for name in files:
            try:
                info = os.lstat(os.path.join(where, name))
            except OSError:
                continue  # gone meanwhile
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)):
                # Copying a named pipe would wait for a writer; a socket cannot be copied at all.
                return f"{os.path.join(where, name)} is not a plain file"
            size += info.st_size
        if size > COPY_BYTES:
            return f"it holds more than {COPY_BYTES // 2**20} MiB"
    return None


class ValidateExecute(Execute):
    """nbgrader's ``Execute`` for Validate: a dead kernel or a spent time budget becomes a message."""

    notebook_timeout = Integer(
        240, help="Seconds Validate may spend running the whole notebook; later cells are not run.").tag(config=True)
    shutdown_kernel = Enum(
        ["graceful", "immediate"], default_value="immediate",
        help="How the kernel ends after the last cell. Its outputs are in by then; a graceful shutdown "
             "waits for TensorFlow to tidy up, which took about 1.5 s of every Validate.").tag(config=True)
    template = Bool(False, help="Fork each notebook's kernel from this process's kernel template, in the grading "
                                "sandbox, so that TensorFlow is imported once per process, not once per notebook. "
                                "Where the sandbox cannot run, the kernel starts as usual, with one log line "
                                "saying why.").tag(config=True)

    _stopped: str | None = None
    _deadline = 0.0
    _sandboxed: SandboxedKernelManager | None = None
    _no_sandbox_said = False

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
        finally:
            if self._sandboxed is not None:
                # nbclient has shut the kernel down (when it started at all); its copy of the folder goes.
                self._sandboxed.cleanup_scratch()
                self._sandboxed = None

    def create_kernel_manager(self) -> Any:
        """nbclient's kernel manager, or one whose kernel is forked from the template (``template``)."""
        notebook_dir = Path(self.resources.get("metadata", {}).get("path") or ".").resolve()
        if not self.template or not self._sandbox_runs_here():
            return super().create_kernel_manager()
        # The kernel gets a copy of the notebook's folder, as when grading; a folder that cannot be copied
        # (a notebook kept in a full home) is validated in place by a kernel started as usual.
        if (why := _not_to_copy(notebook_dir)) is not None:
            self.log.warning("Kernel template not used for %s, its kernel starts as usual: %s", notebook_dir, why)
            return super().create_kernel_manager()
        # Only here: the sandbox's modules need Linux, and the course's configuration imports this one everywhere.
        from grader.engine.sandbox import SandboxedKernelManager, find_data, ready_template

        km = SandboxedKernelManager(kernel_name=self.kernel_name or "python3", config=self.config,
                                    use_template=True)
        km.carla_dir = find_data(notebook_dir)
        # A template that does not finish its imports in a third of the notebook's time is given up (for
        # RETRY_SECONDS): the kernel starts cold in the sandbox, and the press is answered within its limit.
        ready_template(km.carla_dir, self.log, timeout=self.notebook_timeout / 3)
        try:
            # Validate runs the student's own code with their own rights and within their server's limits:
            # the sandbox is the way to the template here, so it needs no control group of its own.
            km.prepare(notebook_dir, whole_submission_limits=False)
        except OSError as err:  # shutil.Error included: a file that cannot be copied
            km.cleanup_scratch()
            self.log.warning("Kernel template not used for %s, its kernel starts as usual: the folder could not "
                             "be copied (%s)", notebook_dir, str(err)[:200])
            return super().create_kernel_manager()
        self.km = self._sandboxed = km
        return km

    def _sandbox_runs_here(self) -> bool:
        try:
            from grader.engine.sandbox import check_available

            check_available()
            return True
        # SandboxUnavailable (a RuntimeError), a probe that hung, or not Linux at all.
        except (ImportError, RuntimeError, OSError, subprocess.SubprocessError) as err:
            if not ValidateExecute._no_sandbox_said:
                ValidateExecute._no_sandbox_said = True
                self.log.warning("Kernel template not used, each kernel starts as usual: %s",
                                 str(err).splitlines()[0])
            return False

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
            # Both kinds of kernel manager Validate uses watch the kernel's sockets.
            connection_lost = getattr(self.km, "connection_lost", None)
            lost = connection_lost is not None and connection_lost() is not None
            why = "it closed or replaced the kernel's sockets" if lost else "os._exit, a crash or too little memory"
            self._stopped = (f"the Python kernel stopped while running the cell that begins `{_first_line(cell)}` "
                             f"({why}). Fix that cell, then restart the kernel and run all cells")
            cell.outputs.append(_error("DeadKernelError", f"This cell stopped the kernel: {self._stopped}."))
            return cell, resources


def install() -> None:
    """Make nbgrader's ``Validator`` run notebooks with ``ValidateExecute``."""
    replace_validator_step(Execute, ValidateExecute)
