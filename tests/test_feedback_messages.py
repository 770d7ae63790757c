"""What a student reads when points are lost: the cause in their terms, their line, never the grader's insides.

Each mistake below is a kind that real students make in this assignment
(written here from scratch).  Its messages must name the cause as the
student would put it, and no message of any corpus may name the grader's
internals: stand-in classes, Keras' generated layer names, grader paths.
"""

from __future__ import annotations

import html
import re

import pytest

from grader.course import read_source, reference_solutions
from grader.dev.examples import Bug, fill
from grader.engine.checks import Evidence, probe_request
from grader.engine.pictures import picture
from grader.engine.record import RunRecord
from grader.engine.verdicts import verdicts
from probe import collect
from tests.conftest import notebook_namespace
from tests.spellings import SLOTS

INTERNAL = re.compile(
    r"_Recorder|Recorder\.|<grader probe>|grader/|grader\.engine|site-packages|probe\.py|Traceback|UpSampling2D|"
    r"KerasTensor|\b(?:conv2d|max_pooling2d|dropout|concatenate|conv2d_transpose|up_sampling2d|input_layer)_\d+\b|"
    r"[\"'](?:conv2d|max_pooling2d|dropout|concatenate|input_layer)[\"']"
)
T = 'Conv2D(n_filters, 3, activation="relu", padding="same", kernel_initializer="he_normal")'

# (name, exercise, reference text, the student's text, words the exercise's messages must contain)
MISTAKES = [
    ("tuple_as_inputs", "unet_model", "conv_block(cblock1[0], n_filters * 2)", "conv_block(cblock1, n_filters * 2)",
     ["conv_block call 2 got a tuple of 2 as inputs", "cblock1[0]", "in unet_model, line"]),
    ("tuple_as_expansive", "unet_model", "upsampling_block(cblock5[0], cblock4[1]",
     "upsampling_block(cblock5, cblock4[1]", ["upsampling_block call 1 got a tuple of 2 as expansive_input"]),
    ("tuple_as_skip", "unet_model", "upsampling_block(ublock7, cblock2[1]", "upsampling_block(ublock7, cblock2",
     ["upsampling_block call 3 got a tuple of 2 as contractive_input", "cblock4[1]"]),
    ("wrong_keyword", "unet_model", "n_filters * 8, dropout_prob=0.3)", "n_filters * 8, dropout=0.3)",
     ["conv_block has no parameter `dropout`; did you mean `dropout_prob`?"]),
    ("wrong_keyword_decoder", "unet_model", "upsampling_block(cblock5[0], cblock4[1], n_filters * 8)",
     "upsampling_block(expansive=cblock5[0], contractive_input=cblock4[1], n_filters=n_filters * 8)",
     ["upsampling_block has no parameter `expansive`; did you mean `expansive_input`?"]),
    ("template_blanks", "conv_block", f"conv = {T}(inputs)",
     'conv = Conv2D(None, None, activation="relu", padding=None, kernel_initializer=None)(None)',
     ["still has the template's None placeholders", "line 13: `conv = Conv2D(None"]),
    ("template_blanks_transpose", "upsampling_block", 'Conv2DTranspose(n_filters, 3, strides=2, padding="same")',
     "Conv2DTranspose(None, None, strides=None, padding=None)", ["still has the template's None placeholders"]),
    ("hard_coded_classes", "unet_model", 'Conv2D(n_classes, 1, padding="same")', 'Conv2D(23, 1, padding="same")',
     ["must use n_classes=5, got 23", "write it as n_classes, not as a number"]),
    ("two_hard_coded_blocks", "unet_model",
     "conv_block(cblock1[0], n_filters * 2)\n    cblock3 = conv_block(cblock2[0], n_filters * 4)",
     "conv_block(cblock1[0], 64)\n    cblock3 = conv_block(cblock2[0], 128)",
     ["2 problems", "conv_block call 2 must use n_filters=16, got 64", "conv_block call 3 must use n_filters=32, "
      "got 128", "write it as n_filters * 4"]),
    ("tf_concat", "upsampling_block", "concatenate([up, contractive_input], axis=3)",
     "tf.concat([up, contractive_input], axis=3)", ["Keras 3 does not let TensorFlow functions"]),
    ("no_strides", "upsampling_block", "strides=2, ", "",
     ["concatenate joins tensors of the same height and width, but these are 12x16 and 24x32"]),
    ("missing_kernel_size", "conv_block", f"conv = {T}(conv)",
     'conv = Conv2D(n_filters, activation="relu", padding="same", kernel_initializer="he_normal")(conv)',
     ["missing 1 required positional argument: 'kernel_size'", "in conv_block, line 14"]),
    ("bottleneck_pools", "unet_model", "dropout_prob=0.3, max_pooling=False)", "dropout_prob=0.3)",
     ["upsampling_block call 1 cannot join its inputs", "Is a block pooling that should not"]),
    ("returns_one_tensor", "conv_block", "return next_layer, skip_connection", "return next_layer",
     ["conv_block must return two values", "it returned a single tensor"]),
]


def messages(code: dict[str, str]) -> dict[str, list[str]]:
    """Every failed graded cell's message, per exercise, as ApplyVerdicts would write it."""
    nb = fill(read_source(), code)
    evidence = collect(notebook_namespace(code), probe_request())
    results = verdicts(nb, RunRecord(evidence=evidence))
    failed: dict[str, list[str]] = {}
    for grade_id, (passed, message) in results.items():
        if not passed:
            failed.setdefault(grade_id.split("_")[1], []).append(message)
    return failed


def _exercise_key(exercise: str) -> str:
    return {"conv_block": "conv", "upsampling_block": "upsampling", "unet_model": "unet"}[exercise]


@pytest.mark.parametrize("name, exercise, old, new, words", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_is_explained_in_the_students_terms(name, exercise, old, new, words):
    failed = messages(Bug(exercise, old, new, name).apply(reference_solutions()))
    assert list(failed) == [_exercise_key(exercise)], failed
    text = " ".join(failed[_exercise_key(exercise)])
    for w in words:
        assert w in text, text
    assert not INTERNAL.search(text), INTERNAL.search(text)


def test_no_message_of_the_spelling_corpus_names_the_graders_insides():
    for spelling in [s for s in SLOTS if s.same is False]:
        for texts in messages(spelling.bug().apply(reference_solutions())).values():
            for text in texts:
                assert not INTERNAL.search(text), (spelling.name, text)


# (exercise, reference text, the student's text, words the picture must show)
PICTURES = [
    ("unet_model", 'Conv2D(n_classes, 1, padding="same")', 'Conv2D(23, 1, padding="same")',
     ["✗ 1x1 Conv2D 23 linear", "spec: 1x1 Conv2D 5 linear"]),
    ("unet_model", "dropout_prob=0.3, max_pooling=False)", "dropout_prob=0.3)",
     ["✗ pools: yes", "spec: pools: no", "missing in yours", "stopped with an error"]),
    ("unet_model", "conv_block(cblock3[0], n_filters * 8, dropout_prob=0.3)", "conv_block(cblock3[0], n_filters * 8)",
     ["✗ dropout 0", "spec: dropout 0.3"]),
    ("conv_block", "skip_connection = conv", "skip_connection = next_layer",
     ["✗ gives: -", "spec: gives: skip_connection"]),
    ("upsampling_block", "concatenate([up, contractive_input], axis=3)",
     "concatenate([contractive_input, up], axis=3)", ["✗ first: contractive_input"]),
]


@pytest.mark.parametrize("exercise, old, new, words", PICTURES, ids=[f"{p[0]}-{i}" for i, p in enumerate(PICTURES)])
def test_the_picture_marks_what_differs_in_words(exercise, old, new, words):
    code = Bug(exercise, old, new, "").apply(reference_solutions())
    svg = picture(exercise, Evidence(collect(notebook_namespace(code), probe_request())))
    assert svg is not None and svg.lstrip().startswith("<?xml")
    for w in words:
        assert w in html.unescape(svg), w


def test_correct_work_gets_no_picture(reference):
    evidence = Evidence(collect(reference, probe_request()))
    assert [picture(f, evidence) for f in ("conv_block", "upsampling_block", "unet_model")] == [None] * 3
