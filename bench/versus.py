"""Grading time per submission of two commits, measured in turns on the same machine.

``python -m bench.versus BEFORE AFTER --rounds 5`` checks both commits out
(``git worktree``, in a temporary folder), builds a scratch course in each, and
then grades one full-marks submission with ``nbgrader autograde --student=ID``
in each commit in turn, ``--rounds`` times.  Taking turns, rather than one
commit's runs after the other's, spreads the machine's changing load over
both, so what is left of the difference is the code's.  It prints each time,
the medians, and whether the two gradebooks hold the same scores.

Both commits run with this environment's Python; a commit whose requirements
differ from the installed ones is measured with what is installed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grader.course import ASSIGNMENT, ROOT

# Run inside each commit's tree: the scratch course and the submissions moved
# modules in the engine's reorganisation, so either place is accepted.
SETUP = """
import sys
from pathlib import Path
try:
    from grader.dev.scratch_course import Course
    from grader.dev.examples import fill, solutions_for
except ImportError:
    from grader.scratch_course import Course
    from grader.examples import fill, solutions_for
import nbformat
from grader.course import ASSIGNMENT, NOTEBOOK

root, data, rounds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
course = Course(root, data)
course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
release = nbformat.read(course.release / f"{NOTEBOOK}.ipynb", as_version=4)
for i in range(rounds):
    path = root / "submitted" / f"s{i:02d}" / ASSIGNMENT / f"{NOTEBOOK}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(fill(release, solutions_for("reference")), path)
print(course.db_url)
"""

SCORES = """
import sys
from nbgrader.api import Gradebook
with Gradebook(sys.argv[1]) as gb:
    print(sorted((s.student.id, s.score) for s in gb.assignment_submissions(sys.argv[2])))
"""


class Tree:
    """One commit checked out, with its scratch course."""

    def __init__(self, rev: str, parent: Path, data: Path, rounds: int):
        self.rev = rev
        self.path = parent / f"tree-{rev[:12]}"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(self.path), rev],
                       check=True)
        self.course = parent / f"course-{rev[:12]}"
        self.course.mkdir()
        self.env = {**os.environ, "CARLA_DATA_DIR": str(data), "TF_CPP_MIN_LOG_LEVEL": "3"}
        self.db_url = self._python(SETUP, str(self.course), str(data), str(rounds)).strip().splitlines()[-1]

    def _python(self, code: str, *args: str) -> str:
        result = subprocess.run([sys.executable, "-c", code, *args], cwd=self.path, env=self.env,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{self.rev}: {result.stdout}{result.stderr}")
        return result.stdout

    def grade(self, student: str) -> float:
        """Seconds that ``nbgrader autograde --student=student`` took in this commit."""
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force", f"--student={student}",
             f"--CourseDirectory.root={self.course}", f"--CourseDirectory.db_url={self.db_url}"],
            cwd=self.path, env=self.env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"{self.rev}: autograde failed:\n{result.stdout}{result.stderr}")
        return seconds

    def scores(self) -> str:
        return self._python(SCORES, self.db_url, ASSIGNMENT).strip()

    def remove(self) -> None:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(self.path)], check=False)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-versus-") as tmp:
        trees = [Tree(rev, Path(tmp), args.data.resolve(), args.rounds) for rev in (args.before, args.after)]
        try:
            times: dict[str, list[float]] = {t.rev: [] for t in trees}
            for i in range(args.rounds):
                for tree in trees:
                    times[tree.rev].append(tree.grade(f"s{i:02d}"))
            same = trees[0].scores() == trees[1].scores()
        finally:
            for tree in trees:
                tree.remove()
    for rev, seconds in times.items():
        print(f"{rev}: median {statistics.median(seconds):.1f} s ({', '.join(f'{s:.1f}' for s in seconds)})")
    print(f"same scores: {same}")
    return {"times": times, "same_scores": same}


if __name__ == "__main__":
    main()
