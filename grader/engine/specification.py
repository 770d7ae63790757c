"""The specification's networks, built in the grader's process from the source notebook's reference solutions.

The reference solutions are the one statement of the network the
specification describes: the functional checks run each student model
beside the model the reference builds for the same call.  For
``unet_model``, the reference is called with the same stand-in blocks the
student's was, so both networks hold the same blocks and differ only in
what ``unet_model`` itself does.
"""

from __future__ import annotations

import ast
import functools
from typing import Any

import probe
from grader.course import read_source, reference_solutions
from test_utils import tf

# The import cell's modules that the solutions use; the data and plotting modules are left out
# (importing them would cost a second per grading process and builds nothing).
_MODULES = ("tensorflow", "numpy")


def _imports(source: str) -> str:
    """The import statements of ``source`` that import one of ``_MODULES``."""
    kept = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        if all(name.split(".")[0] in _MODULES for name in names):
            kept.append(ast.get_source_segment(source, node) or "")
    return "\n".join(kept)


@functools.cache
def reference_functions() -> dict[str, Any]:
    """The namespace of the notebook's Keras imports and its three reference solutions."""
    nb = read_source()
    imports = next(cell.source for cell in nb.cells if cell.cell_type == "code")
    namespace: dict[str, Any] = {}
    exec(compile(_imports(imports), "<imports cell>", "exec"), namespace)
    for exercise, source in reference_solutions(nb).items():
        exec(compile(source, f"<{exercise}>", "exec"), namespace)
    return namespace


def build(case: dict) -> tuple[tf.keras.Model, dict | None]:
    """The specification's model for one probe case (``Case.request()``), and for ``unet_model`` its block calls."""
    functions = reference_functions()
    function = case["function"]
    # The functional checks give it weights of their own: its initial ones would never be used.
    with probe.unfilled_weights(tf):
        if function == "conv_block":
            return probe.conv_block_model(tf, functions[function], case), None
        if function == "upsampling_block":
            return probe.upsampling_model(tf, functions[function], case), None
        model, calls = probe.record_unet(tf, functions[function], case["input_size"], case["n_filters"],
                                         case["n_classes"])
    return model, calls


_BUILT: dict[str, tuple[tf.keras.Model, dict | None]] = {}


def model_for(case: dict) -> tuple[tf.keras.Model, dict | None]:
    """``build(case)``, once per grading process."""
    key = case["key"]
    if key not in _BUILT:
        _BUILT[key] = build(case)
    return _BUILT[key]
