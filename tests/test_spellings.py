"""Correct work never loses a point: the checks judge the network a submission builds, not its spelling.

The property: for every way of writing an exercise, the hidden checks of that
exercise pass exactly when the code builds, for every hidden argument set,
the same network as the specification (``tests.network_oracle`` says which,
without sharing any code with the checks).  Exercise 3 is built with the
student's own blocks, so ``dropout_prob=None`` counts as "no dropout" only
when their ``conv_block`` treats it so.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grader.course import reference_namespace, reference_solutions
from grader.engine.checks import (
    CHECKS,
    CONV_DEFAULT_CASES,
    CONV_DEFAULTS_CALL,
    CONV_OPTION_CASES,
    UNET_CASES,
    UPSAMPLING_CASES,
    CheckFailed,
    Evidence,
    judge,
    probe_request,
)
from probe import collect
from tests.conftest import notebook_namespace
from tests.network_oracle import same_network
from tests.spellings import SLOTS, SUBMISSIONS, WHOLE, Spelling, apply, slots, submission_code

EXERCISES = ("conv_block", "upsampling_block", "unet_model")
HIDDEN_ARGUMENTS = {
    "conv_block": [case.args for case in [*CONV_DEFAULT_CASES, CONV_DEFAULTS_CALL, *CONV_OPTION_CASES]],
    "upsampling_block": [case.args for case in UPSAMPLING_CASES],
    "unet_model": [case.args for case in UNET_CASES],
}


def passes(namespace: dict) -> dict[str, bool]:
    """Per exercise: do all its hidden checks pass?"""
    evidence = Evidence(collect(namespace, probe_request()))
    result = dict.fromkeys(EXERCISES, True)
    for grade_id, check in CHECKS.items():
        try:
            judge(grade_id, evidence)
        except CheckFailed:
            result[check.function] = False
    return result


def builds_the_specified_network(code: dict[str, str], reference: dict) -> dict[str, bool]:
    """Per exercise: does the student's function build the specification's network for every hidden argument set?

    ``unet_model`` is built with the student's own blocks when they are right,
    and otherwise with the specification's: a mistake in a block is that
    block's, and is not charged again to the network.
    """
    namespace = notebook_namespace(code)
    truth = {ex: same_network(namespace, reference, ex, HIDDEN_ARGUMENTS[ex]) for ex in EXERCISES[:2]}
    if not all(truth.values()):
        namespace = notebook_namespace({**reference_solutions(), "unet_model": code["unet_model"]})
    truth["unet_model"] = same_network(namespace, reference, "unet_model", HIDDEN_ARGUMENTS["unet_model"])
    return truth


def judged(spellings: list[Spelling], reference: dict) -> tuple[dict[str, bool], dict[str, bool]]:
    """(what the checks say, what the oracle says) per exercise, for the reference with ``spellings`` put in."""
    code = apply(spellings, reference_solutions())
    return passes(notebook_namespace(code)), builds_the_specified_network(code, reference)


@pytest.mark.parametrize("spelling", SLOTS + WHOLE, ids=lambda s: s.name)
def test_each_spelling_is_judged_by_the_network_it_builds(spelling, reference):
    verdict, truth = judged([spelling], reference)
    if spelling.same is not None:
        assert truth[spelling.exercise] is spelling.same, "the corpus misdescribes this spelling"
    assert verdict == truth


def test_the_corpus_has_both_sides():
    assert sum(s.same is True for s in SLOTS) >= 40 and sum(s.same is False for s in SLOTS) >= 25


SLOT_KEYS = list(slots())


@st.composite
def combinations(draw) -> list[Spelling]:
    """Several slots spelled differently at once, with at most one known mistake among them."""
    grouped = slots()
    keys = draw(st.lists(st.sampled_from(SLOT_KEYS), min_size=2, max_size=8, unique=True))
    chosen = [draw(st.sampled_from([s for s in grouped[key] if s.same is not False])) for key in keys
              if any(s.same is not False for s in grouped[key])]
    mistake = draw(st.none() | st.sampled_from([s for s in SLOTS if s.same is False and (s.exercise, s.old)
                                                not in keys]))
    return chosen + ([mistake] if mistake else [])


@pytest.mark.slow
@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(spellings=combinations())
def test_any_combination_is_judged_by_the_network_it_builds(spellings):
    verdict, truth = judged(spellings, reference_namespace())
    assert verdict == truth


@pytest.mark.parametrize("name", SUBMISSIONS)
def test_the_graded_corpus_builds_the_specified_network(name, reference):
    code = submission_code(name, reference_solutions())
    assert builds_the_specified_network(code, reference) == dict.fromkeys(EXERCISES, True)
    assert passes(notebook_namespace(code)) == dict.fromkeys(EXERCISES, True)
