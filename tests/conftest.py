"""Shared fixtures: a small synthetic data set and the reference solutions."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from carla_synth import generate
from grader.course import read_source, reference_solutions

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """24 synthetic pairs in the real on-disk format."""
    return generate(tmp_path_factory.mktemp("carla"), count=24, seed=5, progress=False)


def notebook_namespace(code: dict[str, str]) -> dict:
    """Run the notebook's import cell and then ``code`` (by exercise), as a kernel would."""
    nb = read_source()
    imports = next(cell.source for cell in nb.cells if cell.cell_type == "code")
    namespace: dict = {}
    exec(compile(imports, "<imports cell>", "exec"), namespace)
    for exercise, source in code.items():
        exec(compile(source, f"<{exercise}>", "exec"), namespace)
    return namespace


@pytest.fixture(scope="session")
def reference() -> dict:
    """Namespace holding the reference conv_block, upsampling_block and unet_model."""
    return notebook_namespace(reference_solutions())


def read_nb(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)
