"""Spellings combined: several slots written differently at once are still judged by the network they build.

Hypothesis draws submissions that rewrite up to eight slots of the reference
at once, with at most one known mistake among them; the hidden checks must
agree with the oracle on every exercise (``tests.spelling_verdicts``).  The
single spellings are in ``test_spellings.py``; this file stands apart so that
the two halves run side by side in `make test`.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grader.course import reference_namespace
from tests.spelling_verdicts import judged
from tests.spellings import SLOTS, Spelling, slots

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
