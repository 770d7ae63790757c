"""`make demo`: release the assignment, grade the example submissions, show the scores.

Runs the same nbgrader commands an instructor would, from the repository root.
Only the example students (named ``example_*``) are written and graded, so a
real class's submissions in the same course folder are left alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from grader.course import ASSIGNMENT, ROOT, SUBMITTED
from grader.examples import EXAMPLES, write_examples
from grader.report import feedback_file, format_table

PREFIX = "example_"


def nbgrader(*args: str) -> None:
    """Run one nbgrader command in the course root, stopping the demo if it fails.

    Its log (and the kernels' start-up chatter) is shown only when it fails.
    """
    command = [sys.executable, "-m", "nbgrader", *args, "--log-level=WARN"]
    print("$ nbgrader " + " ".join(args), flush=True)
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        raise SystemExit(f"nbgrader {args[0]} failed (exit {result.returncode}); its log is above.")


def main() -> None:
    started = time.perf_counter()
    nbgrader("generate_assignment", ASSIGNMENT, "--force")
    for old in SUBMITTED.glob(f"{PREFIX}*"):
        shutil.rmtree(old)
    students = {f"{PREFIX}{name}": text for name, text in EXAMPLES.items()}
    write_examples(SUBMITTED, prefix=PREFIX)
    grading = time.perf_counter()
    nbgrader("autograde", ASSIGNMENT, "--force", f"--student={PREFIX}*")
    per_submission = (time.perf_counter() - grading) / len(students)
    nbgrader("generate_feedback", ASSIGNMENT, "--force", f"--student={PREFIX}*")
    nbgrader("export")
    print()
    print(format_table(students))
    print()
    print(f"Autograding took {per_submission:.1f} s per submission; demo {time.perf_counter() - started:.0f} s in all.")
    print(f"Student release:  {ROOT / 'release' / ASSIGNMENT}")
    print(f"Feedback (HTML):  {feedback_file(PREFIX + '<name>')}")
    print(f"Grades (CSV):     {ROOT / 'grades.csv'}")


if __name__ == "__main__":
    main()
