"""What one grading run hands from step to step: typed, not a free-form dict.

``SandboxedExecute`` fills a ``RunRecord`` while it runs the notebook and
collects the evidence; ``ApplyVerdicts`` reads it (nbgrader passes it along in
``resources[RESOURCE_KEY]``).  ``GradingResult`` is what the engine's entry
point, ``grader.engine.grade_submission``, returns for one submission.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import perf_counter

RESOURCE_KEY = "unet_grading"


@dataclass
class RunRecord:
    """What happened while one submission's notebook ran, and the evidence it left."""

    # Index of a notebook cell -> what went wrong when it ran (error, time limit, dead kernel).
    problems: dict[int, str] = field(default_factory=dict)
    # What the probe reported (``probe.merge``), or None when no evidence came back.
    evidence: dict | None = None
    # Why there is no evidence: the kernel did not start, died, or did not answer.
    reason: str | None = None
    # Seconds per phase: "sandbox start", "run", "evidence", "checks".
    timings: dict[str, float] = field(default_factory=dict)
    # Set when the grading's time budget ran out before every cell had run: which cells used it.
    out_of_time: str | None = None

    def note(self, index: int, message: str) -> None:
        """Record the first problem of cell ``index`` (a later one of the same cell is a consequence)."""
        self.problems.setdefault(index, message)

    def add(self, phase: str, seconds: float) -> None:
        self.timings[phase] = self.timings.get(phase, 0.0) + seconds

    @contextmanager
    def timing(self, phase: str) -> Iterator[None]:
        """Add the time the ``with`` block takes to ``phase`` (a replayed run adds to the same phases)."""
        started = perf_counter()
        try:
            yield
        finally:
            self.add(phase, perf_counter() - started)


def record_of(resources: dict) -> RunRecord:
    """The record ``SandboxedExecute`` left in nbgrader's resources (an empty one says nothing ran)."""
    record = resources.get(RESOURCE_KEY)
    return record if isinstance(record, RunRecord) else RunRecord(reason="the notebook was not executed")


# The last run of each (assignment, student) graded in this process, with its verdicts, for
# ``grade_submission``: nbgrader's converter keeps its resources to itself.
_FINISHED: dict[tuple[str, str], tuple[RunRecord, dict[str, tuple[bool, str]]]] = {}


def finished(resources: dict, record: RunRecord, verdicts: dict[str, tuple[bool, str]]) -> None:
    """Keep a graded submission's record and verdicts (``grade_id -> (passed, message)``) for ``take_finished``."""
    info = resources.get("nbgrader", {})
    _FINISHED[(info.get("assignment", ""), info.get("student", ""))] = (record, verdicts)


def take_finished(assignment: str, student: str) -> tuple[RunRecord, dict[str, tuple[bool, str]]] | None:
    """The record and verdicts of ``student``'s submission graded last in this process, removed once read."""
    return _FINISHED.pop((assignment, student), None)


@dataclass(frozen=True)
class CellResult:
    """The verdict of one graded cell."""

    grade_id: str
    exercise: str
    points: float
    max_points: float
    passed: bool
    message: str


@dataclass(frozen=True)
class GradingResult:
    """One submission, graded: scores per graded cell, what failed and why, and where the time went.

    ``ok`` is false when nbgrader could not finish the submission at all
    (``failure`` says why); a submission that scores 0 is still ``ok``.
    """

    student: str
    assignment: str
    ok: bool
    cells: tuple[CellResult, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    failure: str | None = None
    warnings: tuple[str, ...] = ()
    # The grading's time budget ran out: which cells used it (the grading still counts, scored as it ran).
    out_of_time: str | None = None

    @property
    def score(self) -> float:
        return sum(cell.points for cell in self.cells)

    @property
    def max_score(self) -> float:
        return sum(cell.max_points for cell in self.cells)

    def by_exercise(self) -> dict[str, float]:
        """Points per exercise, in the notebook's order."""
        points: dict[str, float] = {}
        for cell in self.cells:
            points[cell.exercise] = points.get(cell.exercise, 0.0) + cell.points
        return points
