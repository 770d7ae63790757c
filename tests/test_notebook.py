"""The source notebook (reference solutions and hidden tests) runs end to end."""

import os
from unittest import mock

import nbformat
import pytest
from nbclient import NotebookClient

from grader.course import ROOT, SOURCE_NOTEBOOK, nbgrader_meta

pytestmark = pytest.mark.slow


def outputs_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


@pytest.fixture(scope="module")
def executed(small_data):
    nb = nbformat.read(SOURCE_NOTEBOOK, as_version=4)
    env = {"CARLA_DATA_DIR": str(small_data), "UNET_EPOCHS": "1", "PYTHONPATH": str(ROOT),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    # The kernel is killed once the last cell has run: a graceful shutdown only waits for TensorFlow to tidy up.
    with mock.patch.dict(os.environ, env):
        NotebookClient(nb, timeout=600, kernel_name="python3", shutdown_kernel="immediate",
                       resources={"metadata": {"path": str(SOURCE_NOTEBOOK.parent)}}).execute()
    return nb


def test_every_cell_runs_without_error_or_stderr(executed):
    for index, cell in enumerate(executed.cells):
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"cell {index}: {output.get('ename')}: {output.get('evalue')}"
            is_stderr = output.output_type == "stream" and output.name == "stderr"
            assert not is_stderr, f"cell {index} wrote to stderr: {output.text[:300]}"


def test_visible_and_hidden_checks_pass(executed):
    graded = [c for c in executed.cells if nbgrader_meta(c).get("grade")]
    assert len(graded) == 6
    for cell in graded:
        text = outputs_text(cell)
        assert "correct" in text, text  # the hidden tests' success line
        assert "(The hidden tests of this cell run when your notebook is graded.)" in text, text


def test_figures_are_drawn(executed):
    images = sum(1 for c in executed.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    # sample pair, processed pair, training curves, predictions, IoU bars
    assert images >= 5
