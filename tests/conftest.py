"""Shared fixtures: a small synthetic data set and the reference solutions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from carla_synth import generate
from grader.course import ASSIGNMENT, ROOT, reference_namespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """24 synthetic pairs in the real on-disk format."""
    return generate(tmp_path_factory.mktemp("carla"), count=24, seed=5, progress=False)


def notebook_namespace(code: dict[str, str]) -> dict:
    """The namespace a kernel holds after the import cell and ``code`` (by exercise)."""
    return reference_namespace(code)


@pytest.fixture(scope="session")
def reference() -> dict:
    """Namespace holding the reference conv_block, upsampling_block and unet_model."""
    return reference_namespace()


class Course:
    """A private nbgrader course folder that shares the repository's notebooks.

    Commands run from the repository root, so ``nbgrader_config.py`` applies,
    with the course root and gradebook pointed at the private folder.
    """

    def __init__(self, root: Path, data: Path):
        self.root = root
        self.db_url = f"sqlite:///{root / 'gradebook.db'}"
        self.env = {**os.environ, "CARLA_DATA_DIR": str(data), "TF_CPP_MIN_LOG_LEVEL": "3"}
        (root / "notebooks").symlink_to(ROOT / "notebooks")

    def nbgrader(self, *args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "nbgrader", *args,
                   f"--CourseDirectory.root={self.root}", f"--CourseDirectory.db_url={self.db_url}"]
        result = subprocess.run(command, cwd=ROOT, env=self.env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    @property
    def release(self) -> Path:
        return self.root / "release" / ASSIGNMENT
