"""The hidden checks: the reference passes, each kind of mistake fails where it should."""

import json

import pytest

from grader.course import exercises, reference_solutions
from grader.dev.examples import BUGS, Bug, solutions_for
from grader.engine import checks
from grader.engine.checks import CHECKS, Evidence, judge, probe_request
from probe import collect, merge, pieces
from tests.conftest import notebook_namespace


def test_every_graded_cell_of_the_notebook_has_a_check():
    graded = exercises()
    assert [cell for cells in graded.values() for cell, _ in cells] == list(CHECKS)
    for exercise, cells in graded.items():
        assert {CHECKS[cell].function for cell, _ in cells} == {exercise}


def evidence_of(namespace: dict) -> Evidence:
    return Evidence(collect(namespace, probe_request()))


def failures(namespace) -> dict[str, list[str]]:
    """Judge every graded cell; return 'grade_id: message' of the failing ones per exercise."""
    evidence = evidence_of(namespace)
    failed = {}
    for grade_id, check in CHECKS.items():
        try:
            judge(grade_id, evidence)
        except checks.CheckFailed as err:
            failed.setdefault(check.function, []).append(f"{grade_id}: {err}")
    return failed


def variant(exercise: str, old: str, new: str) -> dict:
    return notebook_namespace(Bug(exercise, old, new, "test variant").apply(reference_solutions()))


def test_reference_passes_every_check(reference):
    assert failures(reference) == {}


@pytest.mark.parametrize("student", sorted(BUGS))
def test_each_bundled_bug_fails_all_checks_of_its_exercise_only(student):
    failed = failures(notebook_namespace(solutions_for(student)))
    exercise = BUGS[student].exercise
    assert list(failed) == [exercise]
    assert len(failed[exercise]) == sum(check.function == exercise for check in CHECKS.values())


# (exercise, old, new, the checks that must fail, words the message must contain)
MISTAKES = [
    ("conv_block", 'kernel_initializer="he_normal")(inputs)', ")(inputs)",
     ["test_conv_block_default", "test_conv_block_options"], "initializer expected 'HeNormal'"),
    ("conv_block", "if dropout_prob > 0:\n        conv = Dropout(dropout_prob)(conv)", "pass",
     ["test_conv_block_default", "test_conv_block_options"], "Missing layer"),
    ("conv_block", "if max_pooling else conv", "",
     ["test_conv_block_options"], "max_pooling=False"),
    ("conv_block", "MaxPooling2D((2, 2))", "MaxPooling2D((3, 3))",
     ["test_conv_block_default", "test_conv_block_options"], "Layer 3 (MaxPooling2D): output shape"),
    ("upsampling_block", "concatenate([up, contractive_input], axis=3)",
     "concatenate([contractive_input, up], axis=3)", ["test_upsampling_wiring"], "[up, contractive_input]"),
    ("upsampling_block", 'Conv2DTranspose(n_filters, 3, strides=2, padding="same")',
     'Conv2DTranspose(n_filters, 2, strides=2, padding="same")',
     ["test_upsampling_layers", "test_upsampling_wiring"], "Conv2DTranspose"),
    ("upsampling_block", "\n    conv = Conv2D(n_filters, 3, activation=\"relu\", padding=\"same\", "
     "kernel_initializer=\"he_normal\")(conv)", "",
     ["test_upsampling_layers", "test_upsampling_wiring"], "Missing layer"),
    ("unet_model", "ublock6 = upsampling_block(cblock5[0], cblock4[1], n_filters * 8)",
     "ublock6 = upsampling_block(cblock5[0], cblock4[1], 256)", ["test_unet_decoder"], "n_filters=64"),
    ("unet_model", "cblock4 = conv_block(cblock3[0], n_filters * 8, dropout_prob=0.3)",
     "cblock4 = conv_block(cblock3[0], n_filters * 8)", ["test_unet_encoder"], "dropout_prob=0.3"),
    ("unet_model", "ublock9 = upsampling_block(ublock8, cblock1[1], n_filters)",
     "ublock9 = upsampling_block(ublock8, cblock1[0], n_filters)", ["test_unet_encoder", "test_unet_decoder"],
     "your code raised ValueError"),
    ("unet_model", 'conv10 = Conv2D(n_classes, 1, padding="same")(conv9)',
     'conv10 = Conv2D(n_classes, 1, padding="same", activation="softmax")(conv9)',
     ["test_unet_decoder"], "logits"),
    ("unet_model", 'conv10 = Conv2D(n_classes, 1, padding="same")(conv9)',
     'conv10 = Conv2D(23, 1, padding="same")(conv9)', ["test_unet_decoder"], "n_classes=5"),
]


@pytest.mark.parametrize("exercise, old, new, failing, words", MISTAKES)
def test_mistake_loses_the_points_it_should(exercise, old, new, failing, words):
    failed = failures(variant(exercise, old, new))
    assert list(failed) == [exercise]
    names = [line.split(":")[0] for line in failed[exercise]]
    assert names == failing
    assert any(words in line for line in failed[exercise]), failed[exercise]


def test_changed_signature_is_named_in_the_message():
    ns = variant("conv_block", "def conv_block(inputs=None, n_filters=32,", "def conv_block(inputs=None, filters=32,")
    failed = failures(ns)
    assert list(failed) == ["conv_block"] and len(failed["conv_block"]) == 2
    assert "conv_block's signature was changed: it must be conv_block(inputs=None, n_filters=32, dropout_prob=0, " \
           "max_pooling=True), found conv_block(inputs=None, filters=32, dropout_prob=0, max_pooling=True)" \
           in failed["conv_block"][0]


def test_missing_function_is_named_in_the_message(reference):
    namespace = {k: v for k, v in reference.items() if k != "upsampling_block"}
    failed = failures(namespace)
    assert list(failed) == ["upsampling_block"]
    assert all("upsampling_block is not defined" in line for line in failed["upsampling_block"])


def test_unet_checks_do_not_depend_on_the_students_blocks():
    """A broken conv_block must not cost Exercise 3 points a second time."""
    ns = variant("conv_block", "skip_connection = conv", "skip_connection = None")
    assert list(failures(ns)) == ["conv_block"]
    # ... and the stand-ins are removed afterwards.
    assert ns["conv_block"].__name__ == "conv_block"


def test_failure_shows_only_the_sentence_in_the_notebook():
    namespace = {"conv_block": lambda inputs=None, n_filters=32, dropout_prob=0, max_pooling=True: None}
    with pytest.raises(checks.CheckFailed) as err:
        judge("test_conv_block_default", evidence_of(namespace))
    lines = err.value._render_traceback_()
    assert " ".join(lines) == f"Check failed: {err.value}" and max(map(len, lines)) <= 80
    assert "must return two values" in str(err.value) and "returned a NoneType" in str(err.value)


def test_errors_in_student_code_become_plain_sentences():
    def conv_block(inputs=None, n_filters=32, dropout_prob=0, max_pooling=True):
        raise NotImplementedError("not yet")

    def exits(input_size=(96, 128, 3), n_filters=32, n_classes=23):
        raise SystemExit(3)

    evidence = evidence_of({"conv_block": conv_block, "unet_model": exits})
    with pytest.raises(checks.CheckFailed, match="your code raised NotImplementedError: not yet"):
        judge("test_conv_block_options", evidence)
    with pytest.raises(checks.CheckFailed, match="your code raised SystemExit: 3"):
        judge("test_unet_encoder", evidence)


def test_a_call_that_never_returns_is_stopped():
    def conv_block(inputs=None, n_filters=32, dropout_prob=0, max_pooling=True):
        while True:
            pass

    request = probe_request(seconds_per_call=0.5)
    request["cases"] = [c for c in request["cases"] if c["function"] == "conv_block"][:1]
    with pytest.raises(checks.CheckFailed, match="took longer than the time allowed"):
        checks.check_conv_block_default(Evidence(collect({"conv_block": conv_block}, request)))


@pytest.mark.parametrize("layer_module, layer_class", [("keras.layers", "Lambda"), ("os", "system")])
def test_models_with_code_are_not_rebuilt(layer_module, layer_class):
    layer = {"class_name": layer_class, "module": layer_module, "config": {}}
    text = json.dumps({"class_name": "Functional", "config": {"layers": [layer]}})
    with pytest.raises(checks.CheckFailed, match=f"contains '{layer_class}', which is not one of Keras' built-in"):
        checks.rebuild(text, "context")


@pytest.mark.parametrize("text", ["not json", "[]", '{"class_name": "Sequential", "config": {"layers": []}}',
                                  '{"class_name": "Functional", "config": {"layers": [1]}}'])
def test_evidence_that_is_not_a_functional_model_fails_cleanly(text):
    with pytest.raises(checks.CheckFailed, match="the model could not be read back"):
        checks.rebuild(text, "context")


def test_calls_that_sent_no_result_fail_with_the_reason(reference):
    parts = list(pieces(reference, probe_request()))
    assert parts[-1] == {"complete": True}
    evidence = merge(parts[:-2])  # the last call and the end marker never came
    assert evidence["complete"] is False
    evidence["incomplete"] = "testing your functions took longer than 180 s"
    assert judge("test_conv_block_default", Evidence(evidence)).startswith("conv_block:")
    with pytest.raises(checks.CheckFailed, match="this call could not be tested: testing your functions took longer"):
        judge("test_unet_encoder", Evidence(evidence))
