"""nbgrader's Execute step, run in a sandbox and never trusted for scores.

``SandboxedExecute`` replaces nbgrader's ``Execute`` in ``autograde``:

- the kernel runs under bubblewrap (``grader.engine.sandbox``) unless the instructor
  turns the sandbox off, which logs a warning;
- the hidden test cells are *not* run in the student's kernel; instead
  ``grader.probe`` collects evidence there once the notebook has run, and
  ``grader.engine.verdicts`` judges it outside the kernel;
- a per-cell and a per-notebook time limit, a cap on each cell's output, and a
  kernel that dies all end in an error output that says what happened, never
  in an exception that would make nbgrader drop the submission;
- when the kernel died or stopped answering, the cells before the one that
  broke it are run again in a fresh sandbox, so the exercises defined there
  are still graded;
- the cells after the last graded cell (training, plots) are not run: no
  grade depends on them, and they would take most of the time.

What happened is left in ``resources["unet_grading"]`` for ``ApplyVerdicts``.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from time import monotonic
from typing import Any

from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell
from nbgrader.preprocessors import Execute
from nbgrader.utils import is_grade
from traitlets import Bool, Float, Integer

import probe
from grader.engine.checks import probe_request
from grader.engine.sandbox import Limits, SandboxedKernelManager, check_available

TIMEOUT_NAME = "CellTimeoutError"
NOT_RUN_NOTE = ("[Not run when grading: this cell and the ones after it come after the last graded cell, "
                "so they cannot change your grade.]\n")


def error_output(ename: str, message: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=message, traceback=[f"{ename}: {message}"])


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


class SandboxedExecute(Execute):
    """Run the notebook in a sandbox and collect evidence for the hidden checks."""

    sandbox = Bool(True, help="Run each kernel under bubblewrap. Turn off only for trusted notebooks.").tag(
        config=True)
    notebook_timeout = Integer(600, help="Seconds for the whole notebook, all cells together.").tag(config=True)
    probe_timeout = Integer(180, help="Seconds for collecting the evidence of all hidden checks.").tag(config=True)
    seconds_per_call = Float(20.0, help="Seconds one call of a graded function may take.").tag(config=True)
    output_limit = Integer(200_000, help="Characters of output kept per cell; the rest is dropped.").tag(
        config=True)
    cpu_seconds = Integer(Limits.cpu_seconds, help="CPU seconds the kernel may use.").tag(config=True)
    memory_bytes = Integer(Limits.memory_bytes, help="Address space the kernel may map, in bytes.").tag(
        config=True)
    run_after_last_test = Bool(False, help="Also run the cells after the last graded cell (training and "
                                           "plots). They cannot change any grade.").tag(config=True)

    _warned = False
    _timed_out = False
    _last_graded = -1

    @property
    def limits(self) -> Limits:
        return Limits(cpu_seconds=self.cpu_seconds, memory_bytes=self.memory_bytes)

    # -- nbgrader entry point -------------------------------------------------

    def preprocess(self, nb: NotebookNode, resources: dict, km: Any = None) -> tuple[NotebookNode, dict]:
        hidden = {i: cell.source for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and is_grade(cell)}
        for index in hidden:
            nb.cells[index].source = ""
        self._last_graded = -1 if self.run_after_last_test else max(hidden, default=-1)
        record: dict[str, Any] = {"problems": {}, "evidence": None, "reason": None}
        try:
            self._grade_run(nb, resources, record)
        finally:
            for index, source in hidden.items():
                nb.cells[index].source = source
        resources["unet_grading"] = record
        return nb, resources

    # -- running ---------------------------------------------------------------

    def _kernel_manager(self, notebook_dir: Path) -> SandboxedKernelManager | None:
        if not self.sandbox:
            if not SandboxedExecute._warned:
                self.log.warning("Grading WITHOUT a sandbox (--SandboxedExecute.sandbox=False): student code "
                                 "runs with your rights and can read the hidden tests. Trusted notebooks only.")
                SandboxedExecute._warned = True
            return None
        check_available()
        km = SandboxedKernelManager(kernel_name=self.kernel_name or "python3", config=self.config,
                                    limits=self.limits)
        km.carla_dir = _find_data(notebook_dir)
        km.prepare(notebook_dir)
        return km

    def _grade_run(self, nb: NotebookNode, resources: dict, record: dict) -> None:
        notebook_dir = Path(resources.get("metadata", {}).get("path") or ".").resolve()
        broke_at = self._run(nb, resources, notebook_dir, record)
        if record["evidence"] is None and broke_at is not None:
            # Grade what the cells before the breaking one defined, in a fresh kernel.
            replay = NotebookNode(nb)
            replay.cells = [NotebookNode(cell) for cell in nb.cells[:broke_at]]
            for cell in replay.cells:
                if cell.cell_type == "code":
                    cell.outputs = []
            self.log.warning("Kernel broke in cell %d; replaying the cells before it to collect evidence", broke_at)
            self._run(replay, resources, notebook_dir, record)

    def _run(self, nb: NotebookNode, resources: dict, notebook_dir: Path, record: dict) -> int | None:
        """Execute ``nb`` then probe; return the index of the cell that broke the kernel, if any."""
        km = self._kernel_manager(notebook_dir)
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        self._chars: dict[int, int] = {}
        cell_timeout = self.timeout
        deadline = monotonic() + self.notebook_timeout
        broke_at: int | None = None
        died = skipped = False
        try:
            with self.setup_kernel(cwd=str(notebook_dir)):
                for index, cell in enumerate(nb.cells):
                    if cell.cell_type != "code" or not cell.source.strip():
                        continue
                    if 0 <= self._last_graded < index:
                        # Training and plots come after the last test: grading skips them,
                        # which more than halves the time per submission.
                        cell.outputs = [] if skipped else [NotebookNode(
                            output_type="stream", name="stdout", text=NOT_RUN_NOTE)]
                        skipped = True
                        continue
                    remaining = deadline - monotonic()
                    if remaining < 1:
                        message = f"Not run: the notebook used up its {self.notebook_timeout} s time limit."
                        cell.outputs = [error_output("NotebookTimeLimit", message)]
                        record["problems"].setdefault(index, message)
                        continue
                    self.timeout = max(1, int(min(cell_timeout or remaining, remaining)))
                    self._timed_out = False
                    try:
                        self.execute_cell(cell, index, store_history=True)
                    except (DeadKernelError, RuntimeError, TimeoutError):
                        reason = _exit_reason(self._exit_code(), self.limits)
                        message = f"This cell stopped the kernel: {reason}. Cells after it were not run."
                        cell.outputs.append(error_output("DeadKernelError", message))
                        record["problems"][index] = message
                        broke_at, died = index, True
                        break
                    problem = self._cell_problem(cell)
                    if problem:
                        record["problems"].setdefault(index, problem)
                    if self._timed_out and broke_at is None:
                        broke_at = index
                ran = monotonic()
                self.log.info("Notebook ran in %.1f s", ran - deadline + self.notebook_timeout)
                if not died:
                    self._probe(nb, record)
                    self.log.info("Evidence collected in %.1f s", monotonic() - ran)
        except (RuntimeError, TimeoutError, OSError) as err:
            # The kernel did not start, e.g. because a file in the student's folder
            # broke Python's start-up: a recorded 0 with the reason, not a lost grade.
            self.log.error("Kernel failed in %s: %s", notebook_dir, err)
            record["reason"] = (f"the notebook's kernel could not start or run in your folder ({type(err).__name__}: "
                                f"{str(err)[:200]}); check that no file you handed in has the name of a Python "
                                "module")
        finally:
            self.timeout = cell_timeout
            if km is not None:
                try:
                    run_sync(km.shutdown_kernel)(now=True)
                finally:
                    km.cleanup_scratch()
        return broke_at if record["evidence"] is None else None

    def _exit_code(self) -> int | None:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return None if process is None else process.poll()

    async def _async_handle_timeout(self, timeout: int, cell: NotebookNode | None = None) -> Any:
        self._timed_out = True
        return await super()._async_handle_timeout(timeout, cell)

    def _cell_problem(self, cell: NotebookNode) -> str | None:
        if self._timed_out:
            # The interrupt shows up as a KeyboardInterrupt; say what really happened.
            message = f"This cell did not finish within {self.timeout} s and was interrupted."
            cell.outputs = [o for o in cell.outputs if o.get("output_type") != "error"]
            cell.outputs.append(error_output(TIMEOUT_NAME, message))
            return message
        for output in cell.outputs:
            if output.get("output_type") == "error":
                return f"{output.get('ename')}: {str(output.get('evalue', '')).strip()[:300]}"
        return None

    def _probe(self, nb: NotebookNode, record: dict) -> None:
        request = probe_request(self.seconds_per_call)
        source = Path(probe.__file__).read_text()
        code = (
            "def __unet_grader_probe(source, request):\n"
            "    namespace = {'__name__': 'unet_grader_probe'}\n"
            "    exec(compile(source, '<grader probe>', 'exec'), namespace)\n"
            "    namespace['publish'](__import__('IPython').get_ipython().user_ns, request)\n"
            f"__unet_grader_probe({source!r}, __import__('json').loads({json.dumps(request)!r}))\n"
            "del __unet_grader_probe\n"
        )
        cell = new_code_cell(code)
        self.timeout = self.probe_timeout
        # nbclient stores the executed cell back into the notebook by index, so
        # the probe cell sits at the end while it runs.
        nb.cells.append(cell)
        self._timed_out = False
        died = None
        try:
            self.execute_cell(cell, len(nb.cells) - 1, store_history=False)
        except (DeadKernelError, RuntimeError, TimeoutError):
            died = _exit_reason(self._exit_code(), self.limits)
        finally:
            nb.cells.pop()
        parts = [
            data for output in cell.outputs
            if output.get("output_type") == "display_data"
            and isinstance(data := output.get("data", {}).get(probe.MIME), dict)
            and data.get("nonce") == request["nonce"]
        ]
        if died:
            reason = f"{died} while your functions were tested"
        elif self._timed_out:
            reason = f"testing your functions took longer than {self.probe_timeout} s"
        else:
            reason = "your functions could not be tested (the kernel returned no result)"
        if not parts:
            record["reason"] = reason
            return
        evidence = probe.merge(parts)
        if not evidence["complete"]:
            evidence["incomplete"] = reason
        record["evidence"], record["reason"] = evidence, None

    # -- output cap --------------------------------------------------------------

    def output(self, outs: list, msg: dict, display_id: str | None, cell_index: int) -> NotebookNode | None:
        if probe.MIME in msg.get("content", {}).get("data", {}):
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


def _find_data(notebook_dir: Path) -> Path | None:
    """The course's data folder, found the way the notebook finds it."""
    import carla_data

    try:
        return carla_data.find_data_dir(notebook_dir).resolve()
    except Exception:  # noqa: BLE001 - no data: the notebook reports it in its own cell
        return None
