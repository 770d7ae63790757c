"""A private nbgrader course folder that shares this repository's notebooks and settings.

Tests and benchmarks grade in one of these so the real course folder, its
gradebook and its submissions are never touched.  Commands run from the
repository root, so ``nbgrader_config.py`` applies, with the course root and
gradebook pointed at the private folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from grader.course import ASSIGNMENT, ROOT, gradebook_url, step_folder


class Course:
    """One scratch course: ``root`` holds release/, submitted/, autograded/ ... and, by default, the gradebook."""

    def __init__(self, root: Path, data: Path, db_url: str | None = None):
        self.root = root
        self.db_url = db_url or gradebook_url(root)
        self.env = {**os.environ, "CARLA_DATA_DIR": str(data), "TF_CPP_MIN_LOG_LEVEL": "3"}
        (root / "notebooks").symlink_to(ROOT / "notebooks")

    def nbgrader(self, *args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "nbgrader", *args,
                   f"--CourseDirectory.root={self.root}", f"--CourseDirectory.db_url={self.db_url}"]
        return self.run(command)

    def autograde_class(self, *args: str) -> subprocess.CompletedProcess:
        """``python -m grader.tools.autograde_class`` on this course and gradebook."""
        return self.run([sys.executable, "-m", "grader.tools.autograde_class", "--course", str(self.root),
                         "--db", self.db_url, *args])

    def run(self, command: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
        """Run ``command`` (from the repository root by default); raise with its output when it fails."""
        result = subprocess.run(command, cwd=cwd, env=self.env, capture_output=True, text=True)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(command[:4])} ... failed:\n{result.stdout}{result.stderr}")
        return result

    @property
    def release(self) -> Path:
        return step_folder(self.root, "release") / ASSIGNMENT
