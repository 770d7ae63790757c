"""Grading speed: one submission at a time, and a whole class at once.

Every run happens in scratch course folders (``grader.dev.scratch_course``), with
the data set of this repository, so the real course folder is never touched.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from nbgrader.api import Gradebook

from grader.course import ASSIGNMENT, NOTEBOOK, ROOT
from grader.dev.examples import EXAMPLES, fill, solutions_for
from grader.dev.scratch_course import Course

# nbgrader as it comes: its own Execute runs every cell, hidden tests and full
# training included, with no sandbox.  nbgrader reads nbgrader_config.py from
# its working directory last, so this file is written into the plain course
# folder and nbgrader runs there; it starts from the course's settings.
PLAIN_CONFIG = f"""\
load_subconfig({str(ROOT / 'nbgrader_config.py')!r})
c = get_config()
c.Autograde.exporter_class = "nbconvert.exporters.NotebookExporter"
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput", "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec", "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata"]
c.Autograde.autograde_preprocessors = [
    "nbgrader.preprocessors.Execute", "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor", "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades", "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata"]
c.Autograde.post_convert_hook = None
c.Execute.timeout = 3600
"""


def _write_class(course: Course, students: dict[str, str]) -> None:
    """Submit, for each student id, the example submission named by its value."""
    import nbformat

    release = nbformat.read(course.release / f"{NOTEBOOK}.ipynb", as_version=4)
    for student, example in students.items():
        path = course.root / "submitted" / student / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(fill(release, solutions_for(example)), path)


def _new_course(parent: Path, name: str, data: Path, students: dict[str, str]) -> Course:
    root = parent / name
    root.mkdir()
    course = Course(root, data)
    course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
    _write_class(course, students)
    return course


def _timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def per_submission(data: Path, repeats: int, plain_runs: int) -> dict:
    """Median wall time of ``nbgrader autograde --student=ID`` for one full-marks submission.

    Ours uses the course's settings (sandbox, tests outside the kernel, no
    training); plain runs nbgrader's own Execute over the whole notebook with
    the notebook's grading shortcuts off, so training runs its full epochs.
    """
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        students = {f"s{i:02d}": "reference" for i in range(max(repeats, plain_runs))}
        ours = _new_course(Path(tmp), "ours", data, students)
        ours_times = [_timed(lambda s=s: ours.nbgrader("autograde", ASSIGNMENT, "--force", f"--student={s}"))
                      for s in list(students)[:repeats]]

        plain = _new_course(Path(tmp), "plain", data, students)
        (plain.root / "nbgrader_config.py").write_text(PLAIN_CONFIG)
        plain.env["UNET_GRADING_SHORTCUTS"] = "0"
        plain_times = []
        for student in list(students)[:plain_runs]:
            plain_times.append(_timed(lambda s=student: plain.run(
                [sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force", f"--student={s}",
                 f"--CourseDirectory.root={plain.root}", f"--CourseDirectory.db_url={plain.db_url}"],
                cwd=plain.root)))
        same = _totals(ours.db_url, list(students)[:plain_runs]) == _totals(plain.db_url, list(students)[:plain_runs])
    return {"ours": ours_times, "plain": plain_times, "same_scores": same,
            "ours_median": statistics.median(ours_times), "plain_median": statistics.median(plain_times)}


def _totals(db_url: str, students: list[str]) -> dict[str, float]:
    with Gradebook(db_url) as gb:
        return {s: gb.find_submission(ASSIGNMENT, s).score for s in students}


def whole_class(data: Path, size: int, workers: int) -> dict:
    """A class of ``size`` generated submissions: one ``nbgrader autograde`` against ``--workers``."""
    examples = sorted(EXAMPLES)
    students = {f"student{i:03d}": examples[i % len(examples)] for i in range(size)}
    with tempfile.TemporaryDirectory(prefix="bench-class-") as tmp:
        sequential = _new_course(Path(tmp), "sequential", data, students)
        parallel = _new_course(Path(tmp), "parallel", data, students)
        seconds_sequential = _timed(lambda: sequential.nbgrader("autograde", ASSIGNMENT, "--force"))
        seconds_parallel = _timed(lambda: parallel.autograde_class("--workers", str(workers)))
        same = _totals(sequential.db_url, list(students)) == _totals(parallel.db_url, list(students))
    return {"size": size, "workers": workers, "sequential": seconds_sequential, "parallel": seconds_parallel,
            "same_scores": same}
