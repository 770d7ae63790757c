"""nbgrader's Execute step, run in a sandbox and never trusted for scores.

``SandboxedExecute`` replaces nbgrader's ``Execute`` in ``autograde``:

- the kernel runs under bubblewrap (``grader.engine.sandbox``) unless the
  instructor turns the sandbox off, which logs a warning;
- the hidden test cells are *not* run in the student's kernel; instead
  ``probe`` collects evidence there once the notebook has run, and
  ``grader.engine.verdicts`` judges it outside the kernel;
- a per-cell time limit, one time budget for grading the whole submission
  (``grader.engine.budget``: every run, replay and the testing of its
  functions), a cap on each cell's output, and a kernel that dies all end in
  an error output that says what happened, never in an exception that would
  make nbgrader drop the submission;
- when the kernel died or stopped answering, the cells before the one that
  broke it are run again in a fresh sandbox, so the exercises defined there
  are still graded;
- the cells after the last graded cell (training, plots) are not run: no
  grade depends on them, and they would take most of the time.

What happened is left in a ``RunRecord`` (``grader.engine.record``) for
``ApplyVerdicts``.
"""

from __future__ import annotations

import enum
import json
import signal
from dataclasses import dataclass
from pathlib import Path
from time import monotonic, perf_counter, sleep
from typing import Any

from jupyter_core.utils import run_sync
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell
from nbgrader.preprocessors import Execute
from nbgrader.utils import is_grade
from traitlets import Bool, Float, Integer

import probe
from grader.engine.budget import TimeBudget
from grader.engine.checks import probe_request
from grader.engine.private_api.jupyter_client_api import kernel_exit_code
from grader.engine.private_api.nbclient_api import NotesTimeouts, begin_notebook
from grader.engine.probe_cell import evidence_parts, is_evidence_message, probe_cell_source
from grader.engine.record import RESOURCE_KEY, RunRecord
from grader.engine.sandbox import (
    SANDBOX_DEFAULT,
    Limits,
    SandboxedKernelManager,
    check_available,
    check_limits_available,
    find_data,
    ready_template,
)
from grader.engine.template import default_on

TIMEOUT_NAME = "CellTimeoutError"
NOT_RUN_NOTE = ("[Not run when grading: this cell and the ones after it come after the last graded cell, "
                "so they cannot change your grade.]\n")
# What a kernel that died, or stopped answering, raises from nbclient.
KERNEL_GONE = (DeadKernelError, RuntimeError, TimeoutError)


# At most this many cells are left out for hitting a whole-submission limit; then the run ends there.
MAX_LEFT_OUT = 3
LIMIT_NAME = "SubmissionLimit"
BUDGET_NAME = "GradingTimeBudget"
# A run again (without a cell that hit a limit, or before one that broke the kernel) needs about this much
# of the budget to be worth starting: a sandbox, TensorFlow's import, the cells.
MIN_RUN_SECONDS = 10


class CellRun(enum.Enum):
    """How running one cell ended."""

    FINISHED = "finished"  # with or without an error in the cell
    TIMED_OUT = "timed out"  # interrupted at its time limit; the kernel may be stuck
    KERNEL_DIED = "kernel died"
    LIMIT_HIT = "limit hit"  # the submission reached a whole-submission limit during the cell


@dataclass(frozen=True)
class RunEnd:
    """Where one run in one kernel stopped short: the cell that broke the kernel, and the one that hit a limit."""

    broke_at: int | None = None
    limit_at: int | None = None


def error_output(ename: str, message: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=message, traceback=[f"{ename}: {message}"])


# How long a dead kernel's process may take to report its exit status before the cut connection is blamed.
EXIT_STATUS_WAIT = 2.0


def _exit_reason(code: int | None, limits: Limits) -> str:
    """Why the kernel ended, from its exit status (bubblewrap reports a signal as 128 + its number)."""
    if code is None:
        return "the kernel stopped responding"
    if code < 0 or code > 128:
        number = -code if code < 0 else code - 128
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        if number == signal.SIGXCPU:
            return f"the kernel was stopped after using {limits.cpu_seconds} s of CPU time (SIGXCPU)"
        if number == signal.SIGKILL:
            return "the kernel was killed (SIGKILL), most likely for running out of memory"
        return f"the kernel crashed with signal {name}"
    return f"the kernel exited with status {code} (sys.exit, os._exit or a crash)"


def _no_kernel_reason(err: BaseException) -> str:
    """Why a notebook has no evidence when its kernel did not start or run at all."""
    return (f"the notebook's kernel could not start or run in your folder ({type(err).__name__}: "
            f"{str(err)[:200]}); check that no file you handed in has the name of a Python module")


class SandboxedExecute(NotesTimeouts, Execute):
    """Run the notebook in a sandbox and collect evidence for the hidden checks."""

    sandbox = Bool(SANDBOX_DEFAULT, help="Run each kernel under bubblewrap. Turn off only for trusted notebooks.").tag(
        config=True)
    grading_budget = Integer(120, help="Seconds for grading one submission: every run of its notebook, the "
                                       "replays and the testing of its functions, together. The cells left when "
                                       "it is spent are not run.").tag(config=True)
    evidence_reserve = Integer(15, help="Seconds of grading_budget kept for testing the functions once the "
                                        "cells have run.").tag(config=True)
    probe_timeout = Integer(180, help="Seconds for collecting the evidence of all hidden checks (within what "
                                      "is left of grading_budget).").tag(config=True)
    seconds_per_call = Float(20.0, help="Seconds one call of a graded function may take.").tag(config=True)
    output_limit = Integer(200_000, help="Characters of output kept per cell; the rest is dropped.").tag(
        config=True)
    cpu_seconds = Integer(Limits.cpu_seconds, help="CPU seconds each process may use.").tag(config=True)
    memory_bytes = Integer(Limits.memory_bytes, help="Address space each process may map, in bytes.").tag(
        config=True)
    whole_submission_limits = Bool(True, help="Give each kernel a control group with the limits below, on all "
                                              "its processes together. Turn off only where control groups "
                                              "cannot be used (logged).").tag(config=True)
    max_processes = Integer(Limits.processes, help="Processes and threads a submission may run at once.").tag(
        config=True)
    submission_memory_bytes = Integer(Limits.submission_memory_bytes, help="Memory of all a submission's "
                                      "processes and in-memory files together, in bytes.").tag(config=True)
    cpus = Float(Limits.cpus, help="CPUs a submission may keep busy at once.").tag(config=True)
    submission_cpu_seconds = Integer(Limits.submission_cpu_seconds, help="CPU seconds all a submission's "
                                     "processes may use together.").tag(config=True)
    scratch_bytes = Integer(Limits.scratch_bytes, help="Size of the in-memory copy of the student's folder "
                                                       "(with home), in bytes.").tag(config=True)
    template = Bool(default_on(),
                    help="Fork each kernel from a template process that has imported TensorFlow and the rest "
                         "once (same sandbox and limits; see docs/grading.md). Where it cannot be used, the "
                         "kernel starts cold, with one log line saying why. On by default; UNET_KERNEL_TEMPLATE=0 "
                         "turns the default off.").tag(config=True)
    run_after_last_test = Bool(False, help="Also run the cells after the last graded cell (training and "
                                           "plots). They cannot change any grade.").tag(config=True)

    _warned: set[str] = set()
    _last_graded = -1
    # This submission's (``preprocess`` starts it), and whether the running cell's time limit is what is left of it.
    _budget: TimeBudget
    _cut_by_budget = False

    @property
    def limits(self) -> Limits:
        return Limits(cpu_seconds=self.cpu_seconds, memory_bytes=self.memory_bytes, processes=self.max_processes,
                      submission_memory_bytes=self.submission_memory_bytes, cpus=self.cpus,
                      submission_cpu_seconds=self.submission_cpu_seconds, scratch_bytes=self.scratch_bytes)

    # -- nbgrader entry point -------------------------------------------------

    def preprocess(self, nb: NotebookNode, resources: dict, km: Any = None) -> tuple[NotebookNode, dict]:
        hidden = {i: cell.source for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and is_grade(cell)}
        for index in hidden:
            nb.cells[index].source = ""
        self._last_graded = -1 if self.run_after_last_test else max(hidden, default=-1)
        if self.sandbox and self.template:
            ready_template(find_data(_notebook_dir(resources)), self.log)
        self._budget = TimeBudget(self.grading_budget, min(self.evidence_reserve, self.grading_budget / 4))
        record = RunRecord()
        try:
            self._grade_run(nb, resources, record)
        finally:
            for index, source in hidden.items():
                nb.cells[index].source = source
        resources[RESOURCE_KEY] = record
        return nb, resources

    def _grade_run(self, nb: NotebookNode, resources: dict, record: RunRecord) -> None:
        """Run the notebook; if the kernel broke before the evidence came back, replay what came before.

        A cell during which the submission hit a whole-submission limit is
        left out, and the notebook runs again without it in a fresh sandbox:
        that cell's exercise loses its points, and every other exercise is
        graded as if the cell had never been there.
        """
        notebook_dir = _notebook_dir(resources)
        left_out: list[int] = []
        end = self._run_once(nb, resources, notebook_dir, record, left_out)
        while end.limit_at is not None and len(left_out) < MAX_LEFT_OUT and self._time_for_another_run(nb, record):
            left_out.append(end.limit_at)
            self.log.warning("Cell %d hit a whole-submission limit; running the notebook again without it",
                             end.limit_at)
            end = self._run_once(nb, resources, notebook_dir, record, left_out)
        if record.evidence is None and end.broke_at is not None and self._time_for_another_run(nb, record):
            self.log.warning("Kernel broke in cell %d; replaying the cells before it to collect evidence",
                             end.broke_at)
            self._run_once(_cells_before(nb, end.broke_at), resources, notebook_dir, record, left_out)
        if self._budget.ran_out:
            record.out_of_time = self._budget.spent(nb)

    def _time_for_another_run(self, nb: NotebookNode, record: RunRecord) -> bool:
        """Whether the budget still holds a run of the notebook; if not, that is why there is no evidence."""
        if self._budget.left_for_cells() >= MIN_RUN_SECONDS:
            return True
        self._budget.ran_out = True
        record.reason = f"the notebook could not be run again: {self._budget.spent(nb)}"
        return False

    # -- one run in one kernel --------------------------------------------------

    def check_machine(self) -> None:
        """Raise ``SandboxUnavailable``, with the fix, when this machine cannot run the sandbox.

        Checked once per process; without the sandbox, a warning is logged once instead.
        """
        if not self.sandbox:
            self._warn_once("Grading WITHOUT a sandbox (--SandboxedExecute.sandbox=False): student code runs "
                            "with your rights and can read the hidden tests. Trusted notebooks only.")
            return
        check_available()
        if self.whole_submission_limits:
            check_limits_available()
        else:
            self._warn_once("Grading WITHOUT whole-submission limits (--SandboxedExecute.whole_submission_limits="
                            "False): one submission's processes together can exhaust this machine's memory and "
                            "processes.")

    def _warn_once(self, message: str) -> None:
        if message not in SandboxedExecute._warned:
            self.log.warning(message)
            SandboxedExecute._warned.add(message)

    def _kernel_manager(self, notebook_dir: Path) -> SandboxedKernelManager | None:
        self.check_machine()
        if not self.sandbox:
            return None
        km = SandboxedKernelManager(kernel_name=self.kernel_name or "python3", config=self.config,
                                    limits=self.limits, use_template=self.template)
        km.carla_dir = find_data(notebook_dir)
        km.prepare(notebook_dir, self.whole_submission_limits)
        return km

    def _run_once(self, nb: NotebookNode, resources: dict, notebook_dir: Path, record: RunRecord,
                  left_out: list[int]) -> RunEnd:
        """Execute ``nb`` but the cells ``left_out`` in a fresh kernel, then probe; say where it stopped short."""
        km = self._kernel_manager(notebook_dir)
        begin_notebook(self, nb, km, resources)
        self._chars: dict[int, int] = {}
        cell_timeout: int | None = self.timeout  # type: ignore[has-type]  # a traitlets Integer
        end = RunEnd()
        started = perf_counter()
        try:
            with self.setup_kernel(cwd=str(notebook_dir)):
                record.add("sandbox start", perf_counter() - started)
                with record.timing("run"):
                    end, died = self._run_cells(nb, record, cell_timeout, left_out)
                if not died and end.limit_at is None:
                    with record.timing("evidence"):
                        self._collect_evidence(nb, record)
        except (RuntimeError, TimeoutError, OSError) as err:
            # E.g. a file in the student's folder broke Python's start-up: a recorded 0 with the reason.
            self.log.error("Kernel failed in %s: %s", notebook_dir, err)
            record.reason = _no_kernel_reason(err)
        finally:
            self.timeout = cell_timeout
            self._release(km)
        return end if record.evidence is None else RunEnd()

    def _run_cells(self, nb: NotebookNode, record: RunRecord, cell_timeout: int | None,
                   left_out: list[int]) -> tuple[RunEnd, bool]:
        """Run the code cells in order: where the run stopped short, and whether the kernel died."""
        broke_at, skipping = None, False
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or not cell.source.strip() or index in left_out:
                continue
            if 0 <= self._last_graded < index:
                # Training and plots come after the last test: grading skips them,
                # which more than halves the time per submission.
                cell.outputs = [] if skipping else [NotebookNode(output_type="stream", name="stdout",
                                                                 text=NOT_RUN_NOTE)]
                skipping = True
                continue
            ended = self._run_cell(cell, index, cell_timeout, record)
            if ended is CellRun.LIMIT_HIT:
                return RunEnd(broke_at=index, limit_at=index), False
            if ended is CellRun.KERNEL_DIED:
                return RunEnd(broke_at=index), True
            if ended is CellRun.TIMED_OUT and broke_at is None:
                broke_at = index
        return RunEnd(broke_at=broke_at), False

    def _run_cell(self, cell: NotebookNode, index: int, cell_timeout: int | None, record: RunRecord) -> CellRun:
        """Run one cell within its time limit and what is left of the budget; record what went wrong in it."""
        remaining = self._budget.left_for_cells()
        if remaining < 1:
            self._budget.ran_out = True
            message = f"Not run: {self._budget.spent(self.nb)}."
            cell.outputs = [error_output(BUDGET_NAME, message)]
            record.note(index, message)
            return CellRun.FINISHED
        self.timeout = max(1, int(min(cell_timeout or remaining, remaining)))
        self._cut_by_budget = cell_timeout is None or remaining < cell_timeout
        self.timed_out = False
        started = monotonic()
        try:
            self.execute_cell(cell, index, store_history=True)
        except KERNEL_GONE as err:
            self.log.warning("The kernel is gone in cell %d: %s: %s", index, type(err).__name__, str(err)[:300])
            self._budget.ran(index, monotonic() - started, stopped=False)
            if self._left_out_for_limit(cell, index, record):
                return CellRun.LIMIT_HIT
            message = f"This cell stopped the kernel: {self._gone_reason()}. Cells after it were not run."
            cell.outputs.append(error_output("DeadKernelError", message))
            record.problems[index] = message
            return CellRun.KERNEL_DIED
        self._budget.ran(index, monotonic() - started, stopped=self.timed_out)
        if self._left_out_for_limit(cell, index, record):
            return CellRun.LIMIT_HIT
        problem = self._cell_problem(cell)
        if problem:
            record.note(index, problem)
        return CellRun.TIMED_OUT if self.timed_out else CellRun.FINISHED

    def _gone_reason(self) -> str:
        """Why the kernel is gone: how its process ended or, while it runs on, that it cut its connection."""
        km = self.km
        # A process that ends closes its sockets on the way, so its connections are cut a moment before its
        # exit status can be read; the status is the truer reason (os._exit, a signal, a limit).
        code, deadline = kernel_exit_code(km), monotonic() + EXIT_STATUS_WAIT
        while code is None and monotonic() < deadline:
            sleep(0.05)
            code = kernel_exit_code(km)
        lost = km.connection_lost() if code is None and isinstance(km, SandboxedKernelManager) else None
        return lost or _exit_reason(code, self.limits)

    def _limit_hit(self) -> str | None:
        km = self.km
        return km.limit_hit() if isinstance(km, SandboxedKernelManager) else None

    def _left_out_for_limit(self, cell: NotebookNode, index: int, record: RunRecord) -> bool:
        """If the submission hit a whole-submission limit during this cell, say so in it and leave it out."""
        limit = self._limit_hit()
        if limit is None:
            return False
        message = (f"This cell hit a limit of the whole submission: {limit}. It was left out, and the rest of "
                   "the notebook was graded without it.")
        cell.outputs.append(error_output(LIMIT_NAME, message))
        record.problems[index] = message
        return True

    def _cell_problem(self, cell: NotebookNode) -> str | None:
        if self.timed_out:
            # The interrupt shows up as a KeyboardInterrupt; say what really happened.
            message = f"This cell did not finish within {self.timeout} s and was interrupted."
            if self._cut_by_budget:
                self._budget.ran_out = True
                message = (f"This cell was stopped after {self.timeout} s: the grading's time budget of "
                           f"{self.grading_budget} s for your whole notebook ran out.")
            cell.outputs = [o for o in cell.outputs if o.get("output_type") != "error"]
            cell.outputs.append(error_output(TIMEOUT_NAME, message))
            return message
        for output in cell.outputs:
            if output.get("output_type") == "error":
                return f"{output.get('ename')}: {str(output.get('evalue', '')).strip()[:300]}"
        return None

    # -- evidence ----------------------------------------------------------------

    def _collect_evidence(self, nb: NotebookNode, record: RunRecord) -> None:
        """Run the probe after the notebook's last cell and keep the evidence it sends, or why none came."""
        if self._budget.left() < 1:
            self._budget.ran_out = True
            record.reason = f"there was no time left to test your functions: {self._budget.spent(nb)}"
            return
        request = probe_request(self.seconds_per_call)
        cell = new_code_cell(probe_cell_source(request))
        self.timeout = max(1, int(min(self.probe_timeout, self._budget.left())))
        self.timed_out = False
        # nbclient stores the executed cell back into the notebook by index, so
        # the probe cell sits at the end while it runs.
        nb.cells.append(cell)
        died = None
        try:
            self.execute_cell(cell, len(nb.cells) - 1, store_history=False)
        except KERNEL_GONE:
            died = self._gone_reason()
        finally:
            nb.cells.pop()
        parts = evidence_parts(cell.outputs, request["nonce"])
        limit = self._limit_hit()
        if limit:
            reason = f"{limit} while your functions were tested"
        elif died:
            reason = f"{died} while your functions were tested"
        elif self.timed_out and self._budget.left() < 1:
            self._budget.ran_out = True
            reason = f"testing your functions was stopped after {self.timeout} s: {self._budget.spent(nb)}"
        elif self.timed_out:
            reason = f"testing your functions took longer than {self.probe_timeout} s"
        else:
            reason = "your functions could not be tested (the kernel returned no result)"
        if not parts:
            record.reason = reason
            return
        evidence = probe.merge(parts)
        if not evidence["complete"]:
            evidence["incomplete"] = reason
        record.evidence, record.reason = evidence, None

    # -- output cap --------------------------------------------------------------

    def output(self, outs: list, msg: dict, display_id: str | None, cell_index: int) -> NotebookNode | None:
        if is_evidence_message(msg):
            return super().output(outs, msg, display_id, cell_index)
        size = len(json.dumps(msg.get("content", {}), default=str))
        used = self._chars.get(cell_index, 0)
        self._chars[cell_index] = used + size
        if used + size <= self.output_limit:
            return super().output(outs, msg, display_id, cell_index)
        if used <= self.output_limit:
            note = NotebookNode(output_type="stream", name="stdout",
                                text=f"\n[output cut: this cell printed more than {self.output_limit} characters]\n")
            outs.append(note)
        return None

    def _release(self, km: SandboxedKernelManager | None) -> None:
        if km is not None:
            try:
                run_sync(km.shutdown_kernel)(now=True)
            finally:
                km.cleanup_scratch()


def _cells_before(nb: NotebookNode, index: int) -> NotebookNode:
    """A copy of ``nb`` with only the cells before ``index``, their outputs cleared, to run again."""
    replay = NotebookNode(nb)
    replay.cells = [NotebookNode(cell) for cell in nb.cells[:index]]
    for cell in replay.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    return replay


def _notebook_dir(resources: dict) -> Path:
    return Path(resources.get("metadata", {}).get("path") or ".").resolve()
