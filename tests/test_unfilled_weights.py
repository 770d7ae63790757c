"""Evidence and checks build their models without drawing initial weights (``probe.unfilled_weights``).

The probe, the grader's rebuilt models and the specification's models only
ever have their structure read or get weights of the functional checks' own;
drawing a U-Net's 8.6 million He-normal numbers first would be wasted. These
tests hold that the evidence is the same as with weights drawn, that nothing
is drawn, that code which needs a weight's value while building is probed
as usual, and that no weight is left for Keras to fill later.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import numpy as np
import pytest
from keras.src.backend.common import global_state

import probe
from grader.course import reference_solutions
from grader.engine import checks
from grader.engine.checks import Evidence, probe_request
from probe import collect, unfilled_weights
from test_utils import tf
from tests.conftest import notebook_namespace

EXERCISES = ("conv_block", "upsampling_block", "unet_model")


def without_names(evidence: dict) -> str:
    """The evidence as text, with Keras' numbered layer names made alike (they count up per process)."""
    return re.sub(r"_\d+(?=[\"':])", "", repr(evidence))


def pending() -> list:
    return list(global_state.get_global_attribute("uninitialized_variables") or [])


def test_the_evidence_is_what_the_probe_gathers_with_weights_drawn(reference, monkeypatch):
    request = probe_request()
    unfilled = collect(reference, request)

    @contextmanager
    def drawn(tf):
        yield

    monkeypatch.setattr(probe, "unfilled_weights", drawn)
    filled = collect(reference, request)
    assert all("model" in case for case in unfilled["cases"].values() if case.get("returned") is None)
    assert without_names(unfilled) == without_names(filled)


def test_no_initial_weight_is_drawn_and_none_is_left_to_fill(reference, monkeypatch):
    drawn = []
    # He-normal (the exercises') and Glorot (Keras' default, the probe's stand-in blocks) are both VarianceScaling.
    scaled = tf.keras.initializers.VarianceScaling.__call__
    monkeypatch.setattr(tf.keras.initializers.VarianceScaling, "__call__",
                        lambda self, *a, **k: drawn.append(a) or scaled(self, *a, **k))
    before = pending()
    evidence = Evidence(collect(reference, probe_request()))
    for grade_id in checks.CHECKS:
        checks.judge(grade_id, evidence)
    assert drawn == []
    assert pending() == before
    # Nor by the notebook's visible checks, which build the student's example networks and the specification's.
    import spec_checks

    for function, aspect in spec_checks.VISIBLE:
        spec_checks.visible_check(function, aspect, reference)
    assert drawn == []
    assert pending() == before
    # Outside, Keras builds and fills as always.
    tf.keras.layers.Conv2D(2, 3, kernel_initializer="he_normal")(tf.keras.layers.Input((4, 4, 1)))
    assert len(drawn) == 1


def test_code_that_needs_a_weights_value_while_building_is_probed_as_usual():
    # A variable made from an array cannot wait to be filled.
    made = "    tf.keras.Variable(np.zeros(2, 'float32'))\n"
    code = reference_solutions()
    code["conv_block"] = code["conv_block"].replace("    conv = Conv2D(", made + "    conv = Conv2D(", 1)
    code["unet_model"] = code["unet_model"].replace("    inputs = Input(", made + "    inputs = Input(", 1)
    assert all(made in code[exercise] for exercise in ("conv_block", "unet_model"))
    evidence = Evidence(collect(notebook_namespace(code), probe_request()))
    for grade_id in checks.CHECKS:
        checks.judge(grade_id, evidence)


def test_the_comparison_leaves_the_compared_models_as_they_were(reference):
    from functional_checks import compare

    model = tf.keras.Model(*(lambda x: (x, tf.keras.layers.Conv2D(2, 3, padding="same")(x)))(
        tf.keras.layers.Input((8, 8, 1))))
    weights = [w.numpy().copy() for w in model.weights]
    assert compare(model, model) == []
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(weights, model.weights, strict=True))


def test_a_weight_read_inside_is_drawn_fresh_and_an_assignment_holds_only_inside():
    with unfilled_weights(tf):
        layer = tf.keras.layers.Dense(3, kernel_initializer="ones")
        layer.build((None, 2))
        assert np.array_equal(layer.kernel.numpy(), np.ones((2, 3)))
        layer.kernel.assign(np.zeros((2, 3), "float32"))
        assert np.array_equal(np.asarray(layer(np.ones((1, 2), "float32"))), np.zeros((1, 3)))
    with pytest.raises(AttributeError):
        layer.kernel.assign(np.zeros((2, 3), "float32"))


def test_how_a_block_reads_an_unusual_spelling_is_the_same_when_it_needs_a_weights_value(monkeypatch):
    """The student's own conv_block is asked how it reads unusual arguments; inside the unfilled build a block
    that needs a weight's value fails, and the whole call is built again as usual rather than read as 'no answer'."""
    made = "    tf.keras.Variable(np.zeros(2, 'float32'))\n"
    code = reference_solutions()
    code["conv_block"] = code["conv_block"].replace("    conv = Conv2D(", made + "    conv = Conv2D(", 1)
    # The fourth block gets its rate as a numpy number and the bottleneck its pooling as None: unusual spellings.
    code["unet_model"] = code["unet_model"].replace("dropout_prob=0.3)", "dropout_prob=np.float32(0.3))", 1)
    code["unet_model"] = code["unet_model"].replace("max_pooling=False)", "max_pooling=None)", 1)
    assert "np.float32(0.3)" in code["unet_model"] and "max_pooling=None" in code["unet_model"]
    request = probe_request()
    request["cases"] = [c for c in request["cases"] if c["function"] == "unet_model"]
    unfilled = collect(notebook_namespace(code), request)

    @contextmanager
    def drawn(tf):
        yield

    monkeypatch.setattr(probe, "unfilled_weights", drawn)
    filled = collect(notebook_namespace(code), request)
    readings = [call["own_block"] for case in unfilled["cases"].values() for call in case["down"]]
    assert "same" in readings, readings
    assert without_names(unfilled) == without_names(filled)


def test_a_unet_that_runs_out_of_time_is_not_run_again_and_keeps_the_blocks_it_built():
    # Run again after its time-out, the endless loop would have no time limit left: this test would never end.
    code = reference_solutions()
    first = "    cblock1 = conv_block(inputs, n_filters)\n"
    assert first in code["unet_model"]
    code["unet_model"] = code["unet_model"].replace(first, first + "    while True:\n        pass\n", 1)
    request = probe_request(seconds_per_call=0.5)
    request["cases"] = [c for c in request["cases"] if c["function"] == "unet_model"][:1]
    [answer] = collect(notebook_namespace(code), request)["cases"].values()
    assert "took longer than the time allowed" in answer["error"]
    assert len(answer["partial"]["down"]) == 1
