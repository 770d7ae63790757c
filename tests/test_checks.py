"""The hidden checks: the reference passes, each kind of mistake fails where it should."""

import pytest

from grader import checks
from grader.course import exercises, reference_solutions
from grader.examples import BUGS, Bug, solutions_for
from tests.conftest import notebook_namespace

CHECKS = {
    "conv_block": [checks.check_conv_block_default, checks.check_conv_block_options],
    "upsampling_block": [checks.check_upsampling_layers, checks.check_upsampling_wiring],
    "unet_model": [checks.check_unet_encoder, checks.check_unet_decoder],
}


def test_every_graded_cell_of_the_notebook_has_a_check():
    graded = exercises()
    assert list(graded) == list(CHECKS)
    for exercise, cells in graded.items():
        names = [f.__name__.replace("check_", "test_") for f in CHECKS[exercise]]
        assert [cell for cell, _ in cells] == names


def failures(namespace) -> dict[str, list[str]]:
    """Run every check; return the names of the failing ones per exercise."""
    failed = {}
    for exercise, funcs in CHECKS.items():
        for check in funcs:
            try:
                check(namespace[exercise])
            except Exception as err:  # noqa: BLE001 - any error fails a graded cell
                failed.setdefault(exercise, []).append(f"{check.__name__}: {err}")
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
    assert len(failed[exercise]) == len(CHECKS[exercise])


# (exercise, old, new, the checks that must fail, words the message must contain)
MISTAKES = [
    ("conv_block", 'kernel_initializer="he_normal")(inputs)', ")(inputs)",
     ["check_conv_block_default", "check_conv_block_options"], "initializer expected 'HeNormal'"),
    ("conv_block", "if dropout_prob > 0:\n        conv = Dropout(dropout_prob)(conv)", "pass",
     ["check_conv_block_default", "check_conv_block_options"], "Missing layer"),
    ("conv_block", "if max_pooling else conv", "",
     ["check_conv_block_options"], "max_pooling=False"),
    ("conv_block", "MaxPooling2D((2, 2))", "MaxPooling2D((3, 3))",
     ["check_conv_block_default", "check_conv_block_options"], "Layer 3 (MaxPooling2D): output shape"),
    ("upsampling_block", "concatenate([up, contractive_input], axis=3)",
     "concatenate([contractive_input, up], axis=3)", ["check_upsampling_wiring"], "[up, contractive_input]"),
    ("upsampling_block", 'Conv2DTranspose(n_filters, 3, strides=2, padding="same")',
     'Conv2DTranspose(n_filters, 2, strides=2, padding="same")',
     ["check_upsampling_layers", "check_upsampling_wiring"], "Conv2DTranspose"),
    ("upsampling_block", "\n    conv = Conv2D(n_filters, 3, activation=\"relu\", padding=\"same\", "
     "kernel_initializer=\"he_normal\")(conv)", "",
     ["check_upsampling_layers", "check_upsampling_wiring"], "Missing layer"),
    ("unet_model", "ublock6 = upsampling_block(cblock5[0], cblock4[1], n_filters * 8)",
     "ublock6 = upsampling_block(cblock5[0], cblock4[1], 256)", ["check_unet_decoder"], "n_filters=64"),
    ("unet_model", "cblock4 = conv_block(cblock3[0], n_filters * 8, dropout_prob=0.3)",
     "cblock4 = conv_block(cblock3[0], n_filters * 8)", ["check_unet_encoder"], "dropout_prob=0.3"),
    ("unet_model", "ublock9 = upsampling_block(ublock8, cblock1[1], n_filters)",
     "ublock9 = upsampling_block(ublock8, cblock1[0], n_filters)", ["check_unet_encoder", "check_unet_decoder"],
     "building the model raised ValueError"),
    ("unet_model", 'conv10 = Conv2D(n_classes, 1, padding="same")(conv9)',
     'conv10 = Conv2D(n_classes, 1, padding="same", activation="softmax")(conv9)',
     ["check_unet_decoder"], "logits"),
    ("unet_model", 'conv10 = Conv2D(n_classes, 1, padding="same")(conv9)',
     'conv10 = Conv2D(23, 1, padding="same")(conv9)', ["check_unet_decoder"], "n_classes=5"),
]


@pytest.mark.parametrize("exercise, old, new, failing, words", MISTAKES)
def test_mistake_loses_the_points_it_should(exercise, old, new, failing, words):
    failed = failures(variant(exercise, old, new))
    assert list(failed) == [exercise]
    names = [line.split(":")[0] for line in failed[exercise]]
    assert names == failing
    assert any(words in line for line in failed[exercise]), failed[exercise]


def test_renamed_parameter_is_named_in_the_message():
    ns = variant("conv_block", "def conv_block(inputs=None, n_filters=32,", "def conv_block(inputs=None, filters=32,")
    with pytest.raises(AssertionError, match="conv_block has no parameter 'n_filters'"):
        checks.check_conv_block_default(ns["conv_block"])


def test_unet_checks_do_not_depend_on_the_students_blocks():
    """A broken conv_block must not cost Exercise 3 points a second time."""
    ns = variant("conv_block", "skip_connection = conv", "skip_connection = None")
    checks.check_unet_encoder(ns["unet_model"])
    checks.check_unet_decoder(ns["unet_model"])
    # ... and the stand-ins are removed afterwards.
    assert ns["conv_block"].__name__ == "conv_block"


def test_failure_shows_only_the_sentence_in_the_notebook():
    with pytest.raises(checks.CheckFailed) as err:
        checks.check_conv_block_default(lambda inputs=None, n_filters=32, dropout_prob=0, max_pooling=True: None)
    assert err.value._render_traceback_() == [f"Check failed: {err.value}"]
    assert "must return two values" in str(err.value)


def test_unexpected_error_becomes_a_plain_sentence():
    def conv_block(inputs=None, n_filters=32, dropout_prob=0, max_pooling=True):
        raise NotImplementedError()

    with pytest.raises(checks.CheckFailed, match="building the model raised NotImplementedError"):
        checks.check_conv_block_options(conv_block)
    with pytest.raises(checks.CheckFailed, match="building the model raised TypeError"):
        checks.check_unet_encoder(lambda input_size=(96, 128, 3), n_filters=32, n_classes=23: 1 / "x")
    with pytest.raises(checks.CheckFailed, match="Defaults, dropout on and off.*your code raised AttributeError"):
        checks.check_conv_block_options(lambda inputs=None, n_filters=32, dropout_prob=0, max_pooling=True: (1, 2))
