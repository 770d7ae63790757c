"""What the network computes: mistakes the structure does not show lose points, equivalent networks lose none.

Each mistake below builds layers of the right kinds, shapes, parameter
counts and wiring, so the structural checks alone pass it (shown here by
switching the functional check off); the functional check then fails the
graded cell whose aspect the mistake concerns, with a message naming the
call, the layer, what the specification computes and what the student's
does.  The visible checks say the same on the notebook's example.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import functional_checks
import spec_checks
from grader.course import ROOT, reference_solutions
from grader.dev.examples import Bug
from grader.engine import checks, specification
from grader.engine.checks import CHECKS, Evidence, judge, probe_request
from probe import collect
from test_utils import summary, tf
from tests.conftest import notebook_namespace

T = 'Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")'
TRANSPOSE = 'Conv2DTranspose(n_filters, 3, strides=2, padding="same")'

# (name, exercise, old, new, the cells that must fail, words of the message, the visible aspect that says it)
MISTAKES = [
    ("transpose_relu", "upsampling_block", TRANSPOSE, TRANSPOSE[:-1] + ', activation="relu")',
     ["test_upsampling_wiring"], "your Conv2DTranspose applies relu; the specification's has no activation", "wiring"),
    ("conv2_dilation", "conv_block", f"conv = {T}(conv)", f"conv = {T[:-1]}, dilation_rate=2)(conv)",
     ["test_conv_block_default"], "your second Conv2D has dilation_rate=(2, 2); the specification's has "
     "dilation_rate=(1, 1)", "layers"),
    ("up_conv_dilation", "upsampling_block", f"conv = {T}(merge)", f"conv = {T[:-1]}, dilation_rate=3)(merge)",
     ["test_upsampling_layers"], "your first Conv2D has dilation_rate=(3, 3)", "layers"),
    ("dropout_training_true", "conv_block", "Dropout(dropout_prob)(conv)", "Dropout(dropout_prob)(conv, training=True)",
     ["test_conv_block_options"], "your Dropout is called with training=True, so it keeps dropping activations when "
     "the network predicts", "options"),
    ("dropout_noise_shape", "conv_block", "Dropout(dropout_prob)(conv)",
     "Dropout(dropout_prob, noise_shape=(None, 1, 1, n_filters))(conv)", ["test_conv_block_options"],
     "in training, your Dropout drops the same activations in every row and column", "options"),
    ("head3_dilation", "unet_model", f"conv9 = {T}(ublock9)", f"conv9 = {T[:-1]}, dilation_rate=2)(ublock9)",
     ["test_unet_decoder"], "your 3x3 Conv2D before the output layer has dilation_rate=(2, 2)", "decoder"),
    ("head1_no_bias", "unet_model", 'Conv2D(n_classes, 1, padding="same")', 'Conv2D(n_classes, 1, use_bias=False)',
     ["test_unet_decoder"], "your 1x1 Conv2D (the output layer) has use_bias=False; the specification's has "
     "use_bias=True", "decoder"),
]


def failed_cells(evidence: Evidence) -> dict[str, str]:
    found = {}
    for grade_id in CHECKS:
        try:
            judge(grade_id, evidence)
        except checks.CheckFailed as err:
            found[grade_id] = str(err)
    return found


def code_with(exercise: str, old: str, new: str) -> dict[str, str]:
    return Bug(exercise, old, new, "").apply(reference_solutions())


@pytest.mark.parametrize("name, exercise, old, new, failing, words, visible", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_a_mistake_the_structure_misses_loses_the_points_of_its_aspect(name, exercise, old, new, failing, words,
                                                                       visible, monkeypatch):
    namespace = notebook_namespace(code_with(exercise, old, new))
    evidence = Evidence(collect(namespace, probe_request()))
    failed = failed_cells(evidence)
    assert sorted(failed) == failing, failed
    assert all(words in message for message in failed.values()), failed
    # Without the functional check the structure passes it: the check above is what catches it.
    monkeypatch.setattr(Evidence, "differences", lambda self, case: [])
    assert failed_cells(Evidence(collect(namespace, probe_request()))) == {}
    # The visible check of the same aspect says it on the notebook's example, and only that one fails.
    monkeypatch.undo()
    outcomes = {}
    for (function, aspect), check in spec_checks.VISIBLE.items():
        if function == exercise:
            try:
                check(namespace[function])
                outcomes[aspect] = "passed"
            except spec_checks.CheckFailed as err:
                outcomes[aspect] = str(err)
    assert [a for a, text in outcomes.items() if text != "passed"] == [visible], outcomes
    assert words in outcomes[visible]


def test_hidden_argument_sets_stay_out_of_the_visible_messages():
    namespace = notebook_namespace(code_with("conv_block", "Dropout(dropout_prob)(conv)",
                                             "Dropout(dropout_prob)(conv, training=True)"))
    with pytest.raises(spec_checks.CheckFailed) as err:
        spec_checks.visible_check("conv_block", "options", namespace)
    text = str(err.value)
    assert "n_filters=1024, dropout_prob=0.1" in text
    hidden = [case.args for check in CHECKS.values() for case in check.cases]
    assert not any(str(tuple(args.get("shape", ()))) in text for args in hidden if args.get("shape") != [96, 128, 3])


def test_the_reference_computes_as_specified_under_mixed_precision():
    """The notebook switches on mixed precision before the grader collects; precision is no part of the rule."""
    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        data = collect(notebook_namespace(reference_solutions()), probe_request())
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)
    assert "bfloat16" in next(iter(data["cases"].values()))["model"]
    assert failed_cells(Evidence(data)) == {}


def _block(order: str) -> tf.keras.Model:
    layers = tf.keras.layers
    x = layers.Input((8, 12, 3))
    made = {"a": layers.Conv2D(4, 3, activation="relu", padding="same", name=f"{order}_a"),
            "b": layers.Conv2D(4, (3, 3), activation=tf.nn.relu, padding="SAME", name=f"{order}_b"),
            "pool": layers.MaxPool2D(name=f"{order}_pool")}
    if order == "backwards":  # layers made in another order, with other names: the same network
        made = dict(reversed(list(made.items())))
    skip = made["b"](made["a"](x))
    return tf.keras.Model(x, [made["pool"](skip), skip])


def test_layers_are_matched_by_their_place_in_the_graph_not_by_name_or_order():
    assert functional_checks.compare(_block("backwards"), _block("forwards")) == []


def test_an_extra_operation_is_a_wiring_difference():
    spec = _block("forwards")
    x = tf.keras.layers.Input((8, 12, 3))
    first = tf.keras.layers.Conv2D(4, 3, activation="relu", padding="same")(x)
    skip = tf.keras.layers.Conv2D(4, 3, activation="relu", padding="same")(tf.keras.layers.Activation("tanh")(first))
    student = tf.keras.Model(x, [tf.keras.layers.MaxPooling2D()(skip), skip])
    (difference,) = functional_checks.compare(student, spec)
    assert difference.kind == "wiring"
    assert difference.message == "where the specification has Conv2D, your network has Activation."


def test_a_halved_input_pools_and_pads_as_the_full_one():
    spec, _ = specification.build({**spec_checks.VISIBLE_CALLS["conv_dropout"], "key": "conv_dropout"})
    assert functional_checks.halvings(spec) == 4  # 96x128 run as 6x8: pooled, still an even size
    assert functional_checks.halvings(specification.build(
        {**spec_checks.VISIBLE_CALLS["unet_example"], "key": "unet"})[0]) == 1


def test_the_specification_file_holds_what_the_reference_builds(tmp_path):
    target = tmp_path / "specification.json"
    code = (f"from pathlib import Path; from grader.dev.specification_file import write; "
            f"write(Path({str(target)!r}))")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)
    assert target.read_text() == spec_checks.SPECIFICATION_FILE.read_text(), \
        "specification.json is out of date: run make specification"


@pytest.mark.parametrize("name", list(spec_checks.VISIBLE_CALLS))
def test_the_visible_specification_matches_the_hidden_one(name):
    stored, _ = spec_checks.specification_network(name)
    built, _ = specification.build({**spec_checks.VISIBLE_CALLS[name], "key": name})
    assert summary(stored) == summary(built)
    assert functional_checks.compare(stored, built) == []


def test_deviations_of_a_mistake_are_far_above_the_tolerance():
    spec = _block("forwards")
    x = tf.keras.layers.Input((8, 12, 3))
    skip = tf.keras.layers.Conv2D(4, 3, activation="relu", padding="same", dilation_rate=2)(
        tf.keras.layers.Conv2D(4, 3, activation="relu", padding="same")(x))
    student = tf.keras.Model(x, [tf.keras.layers.MaxPooling2D()(skip), skip])
    found = functional_checks.deviations(student, spec)
    assert found is not None and found["layer"] > 100 * functional_checks.RELATIVE_TOLERANCE
    assert functional_checks.deviations(_block("backwards"), spec) == {"layer": 0.0, "outputs": 0.0}
    assert np.isfinite(found["outputs"])


@pytest.mark.slow
def test_the_tolerance_lies_far_between_equivalent_networks_and_mistakes():
    from bench.tolerance import measure

    figures = measure()
    assert figures.networks > 100
    assert max(figures.equivalent_layer, figures.equivalent_outputs) <= functional_checks.RELATIVE_TOLERANCE / 100
    assert figures.mistake_smallest >= 100 * functional_checks.RELATIVE_TOLERANCE, figures
