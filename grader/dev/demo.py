"""`make demo`: release the assignment, grade the example submissions, show the results.

Runs the same nbgrader commands an instructor would, from the repository root.
Only the example students (named ``example_*``) are written and graded, so a
real class's submissions in the same course folder are left alone.  Then it
trains the reference U-Net as the notebook does and saves its figures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from nbgrader.api import Gradebook
from tqdm import tqdm

from grader.course import ASSIGNMENT, DB_URL, GRADEBOOK, LAB, ROOT, SUBMITTED
from grader.dev import training
from grader.dev.examples import EXAMPLES, write_examples
from grader.tools import grades as summary
from grader.tools.grades import feedback_file, format_table

PREFIX = "example_"
REPORTS = ROOT / "reports"
# nbgrader logs this line once per finished submission; it drives the progress bar.
SUBMISSION_DONE = "Setting destination file permissions"


def nbgrader(*args: str, submissions: int = 0) -> None:
    """Run one nbgrader command in the course root, stopping the demo if it fails.

    Its log (and the kernels' start-up chatter) is shown only when it fails.
    With ``submissions``, a progress bar counts the submissions it finishes.
    """
    command = [sys.executable, "-m", "nbgrader", *args, "--log-level=INFO"]
    print("$ nbgrader " + " ".join(args), flush=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = []
    with subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process, \
            tqdm(total=submissions, unit="submission", disable=not submissions, file=sys.stdout) as bar:
        for line in process.stdout:
            log.append(line)
            if SUBMISSION_DONE in line:
                bar.update()
    if process.returncode != 0:
        sys.stderr.write("".join(log))
        raise SystemExit(f"nbgrader {args[0]} failed (exit {process.returncode}); its log is above.")


def forget_examples() -> None:
    """Remove the example students from the gradebook (if there is one).

    nbgrader refuses to release a changed notebook while it has submissions;
    the examples' are the demo's own, and are graded again below.
    """
    if not GRADEBOOK.exists():
        return
    with Gradebook(DB_URL) as gb:
        for student in [s.id for s in gb.students if s.id.startswith(PREFIX)]:
            gb.remove_student(student)


def main() -> None:
    started = time.perf_counter()
    forget_examples()
    nbgrader("generate_assignment", ASSIGNMENT, "--force")
    # The companion lab is released the same way but kept out of the gradebook: it is never graded.
    nbgrader("generate_assignment", LAB, "--force", "--no-db")
    for old in SUBMITTED.glob(f"{PREFIX}*"):
        shutil.rmtree(old)
    students = {f"{PREFIX}{name}": text for name, text in EXAMPLES.items()}
    write_examples(SUBMITTED, prefix=PREFIX)
    grading = time.perf_counter()
    nbgrader("autograde", ASSIGNMENT, "--force", f"--student={PREFIX}*", submissions=len(students))
    per_submission = (time.perf_counter() - grading) / len(students)
    nbgrader("generate_feedback", ASSIGNMENT, "--force", f"--student={PREFIX}*", submissions=len(students))
    nbgrader("export")
    overview = summary.render(out=REPORTS)

    print(f"\nTraining the reference U-Net as the notebook does (UNET_EPOCHS, default {training.DEFAULT_EPOCHS}):")
    trained = training.main(["--out", str(REPORTS)])

    print()
    print(format_table(students))
    print()
    print(overview)
    print()
    print(f"Autograding took {per_submission:.1f} s per submission; demo {time.perf_counter() - started:.0f} s in all.")
    print(f"Student release:  {ROOT / 'release' / ASSIGNMENT}")
    print(f"Companion lab:    {ROOT / 'release' / LAB} (ungraded; beside the assignment's folder)")
    print(f"Feedback (HTML):  {feedback_file(PREFIX + '<name>')}")
    print(f"Grades (CSV):     {ROOT / 'grades.csv'}")
    print(f"Class summary:    {REPORTS / 'summary.md'}, {REPORTS / 'score_histogram.png'}")
    print("Training figures: " + ", ".join(str(p) for p in trained.figures))


if __name__ == "__main__":
    main()
