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

from grader.course import reference_solutions
from tests.conftest import notebook_namespace
from tests.spelling_verdicts import EXERCISES, builds_the_specified_network, judged, passes
from tests.spellings import SLOTS, SUBMISSIONS, WHOLE, submission_code


@pytest.mark.parametrize("spelling", SLOTS + WHOLE, ids=lambda s: s.name)
def test_each_spelling_is_judged_by_the_network_it_builds(spelling, reference):
    verdict, truth = judged([spelling], reference)
    if spelling.same is not None:
        assert truth[spelling.exercise] is spelling.same, "the corpus misdescribes this spelling"
    assert verdict == truth


def test_the_corpus_has_both_sides():
    assert sum(s.same is True for s in SLOTS) >= 40 and sum(s.same is False for s in SLOTS) >= 25


@pytest.mark.parametrize("name", SUBMISSIONS)
def test_the_graded_corpus_builds_the_specified_network(name, reference):
    code = submission_code(name, reference_solutions())
    assert builds_the_specified_network(code, reference) == dict.fromkeys(EXERCISES, True)
    assert passes(notebook_namespace(code)) == dict.fromkeys(EXERCISES, True)
