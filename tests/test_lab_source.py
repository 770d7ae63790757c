"""The companion lab's source and its support code, without training (quick; in `make test`)."""

from __future__ import annotations

import ast

import nbformat
import numpy as np
import pytest
from nbgrader.preprocessors import ClearSolutions

import lab_plots
import skip_lab
from grader import student_side
from grader.course import LAB_SOURCE, SOURCE_NOTEBOOK, nbgrader_meta
from test_utils import tf


def lab() -> nbformat.NotebookNode:
    return nbformat.read(LAB_SOURCE, as_version=4)


def test_stored_without_outputs():
    for index, cell in enumerate(lab().cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"cell {index} has outputs"


def test_nothing_in_the_lab_is_graded():
    for cell in lab().cells:
        meta = nbgrader_meta(cell)
        assert not meta.get("grade") or (cell.cell_type == "markdown" and meta.get("points") == 0), cell.source[:80]


def test_the_release_keeps_the_questions_and_drops_the_answers():
    nb = lab()
    answer_cells = [c for c in nb.cells if nbgrader_meta(c).get("solution")]
    assert len(answer_cells) == 2
    released, _ = ClearSolutions().preprocess(nb, {"language": "python"})
    text = "\n".join(c.source for c in released.cells)
    assert "Model answers" not in text and "BEGIN SOLUTION" not in text
    assert text.count("YOUR ANSWER HERE") == 2
    assert "Why are the road lines, traffic signs and pedestrians gone" in text and "Which pixels are the pole?" in text


def test_every_module_the_lab_imports_is_in_its_folder():
    folder = LAB_SOURCE.parent
    imported = set()
    for cell in lab().cells:
        if cell.cell_type == "code":
            for node in ast.walk(ast.parse(cell.source)):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                    imported |= {name.split(".")[0] for name in names}
    own = {*student_side.MODULES, *student_side.LAB_MODULES}
    needed = imported & own
    assert {"skip_lab", "lab_plots", "carla_data", "carla_plots", "test_utils"} <= needed
    # and what those modules import in turn
    needed |= {"precision"}
    for name in needed:
        module = folder / f"{name}.py"
        if name in student_side.LAB_MODULES:
            assert module.is_file() and not module.is_symlink(), f"{module} must be the lab's own file"
        else:
            shared = student_side.ASSIGNMENT_DIR / f"{name}.py"
            assert module.is_symlink() and module.resolve() == shared, f"{module} must link to {shared}"


def test_the_footprints_add_up_to_keras_transposed_convolution():
    rng = np.random.default_rng(0)
    for size in (2, 3):
        x, kernel = rng.normal(size=(size, size)), rng.normal(size=(3, 3))
        layer = tf.keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same", use_bias=False)
        layer.build((None, size, size, 1))
        layer.set_weights([kernel[:, :, None, None]])
        keras_output = layer(x[None, :, :, None].astype("float32")).numpy()[0, :, :, 0]
        np.testing.assert_allclose(sum(lab_plots.footprints(x, kernel)), keras_output, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def blocks():
    return skip_lab.load_blocks(SOURCE_NOTEBOOK)


def test_the_two_networks_differ_only_in_what_reaches_the_decoder(blocks):
    built = {}
    for skips in (True, False):
        tf.keras.utils.set_random_seed(0)
        built[skips] = skip_lab.encoder_decoder(blocks["conv_block"], blocks["upsampling_block"], skips,
                                                input_size=(32, 32, 3), n_filters=4)
    assert built[True].count_params() == built[False].count_params()
    for a, b in zip(built[True].get_weights(), built[False].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # same seed, same starting weights
    image = np.random.default_rng(1).uniform(size=(1, 32, 32, 3)).astype("float32")
    for skips, model in built.items():
        joins = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.Concatenate)]
        assert len(joins) == skip_lab.DEPTH
        across = tf.keras.Model(model.input, [join.input[1] for join in joins])(image)
        assert all(bool(np.any(t.numpy())) == skips for t in across), "without skips the decoder must get zeros"


def _notebook_with(tmp_path, source: str):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    path = tmp_path / "unet.ipynb"
    nbformat.write(nb, path)
    return path


def test_unfinished_blocks_stop_the_lab_with_advice(tmp_path):
    nb = nbformat.read(SOURCE_NOTEBOOK, as_version=4)
    released, _ = ClearSolutions().preprocess(nb, {"language": "python"})
    path = tmp_path / "unet.ipynb"
    nbformat.write(released, path)
    assert "raise NotImplementedError" in path.read_text()
    with pytest.raises(skip_lab.LabError, match="not written yet: finish Exercises 1 and 2"):
        skip_lab.load_blocks(path)


def test_missing_or_broken_blocks_are_named(tmp_path):
    with pytest.raises(skip_lab.LabError, match="defines no upsampling_block"):
        skip_lab.load_blocks(_notebook_with(tmp_path, "def conv_block(inputs, n_filters=32):\n    return inputs"))
    no_pooling = ("from tensorflow.keras.layers import Conv2D\n"
                  "def conv_block(inputs=None, n_filters=32, dropout_prob=0, max_pooling=True):\n"
                  "    return inputs, inputs\n"
                  "def upsampling_block(expansive_input, contractive_input, n_filters=32):\n"
                  "    return Conv2D(n_filters, 3, padding='same')(expansive_input)\n")
    with pytest.raises(skip_lab.LabError, match=r"conv_block .* gives 8x8 where the U-Net needs 4x4"):
        skip_lab.load_blocks(_notebook_with(tmp_path, no_pooling))
    crashing = no_pooling.replace("return inputs, inputs", "return inputs")
    with pytest.raises(skip_lab.LabError, match="fail on a small example"):
        skip_lab.load_blocks(_notebook_with(tmp_path, crashing))


def test_only_definitions_run_and_unavailable_imports_are_skipped(tmp_path):
    code = ("from a_module_the_lab_does_not_have import something\n"
            "raise SystemExit('a statement that is not a definition ran')\n"
            "from tensorflow.keras.layers import Conv2D, Conv2DTranspose, Dropout, MaxPooling2D, concatenate\n")
    nb = nbformat.read(SOURCE_NOTEBOOK, as_version=4)
    blocks_code = [c.source for c in nb.cells if "def conv_block" in c.source or "def upsampling_block" in c.source]
    blocks = skip_lab.load_blocks(_notebook_with(tmp_path, code + "\n" + "\n".join(blocks_code)))
    assert set(blocks) == {"conv_block", "upsampling_block"}


def test_the_assignment_is_found_beside_the_lab_or_where_the_variable_says(tmp_path, monkeypatch):
    monkeypatch.delenv(skip_lab.ASSIGNMENT_ENV, raising=False)
    assert skip_lab.find_assignment(LAB_SOURCE.parent) == SOURCE_NOTEBOOK
    with pytest.raises(skip_lab.LabError, match="Put the lab's folder next to your assignment folder"):
        skip_lab.find_assignment(tmp_path)
    monkeypatch.setenv(skip_lab.ASSIGNMENT_ENV, str(tmp_path / "nowhere.ipynb"))
    with pytest.raises(skip_lab.LabError, match="which is not a file"):
        skip_lab.find_assignment()
