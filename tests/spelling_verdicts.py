"""The two verdicts the spelling tests compare: what the hidden checks say, and what the oracle says.

``judged`` puts spellings into the reference solutions and returns, per
exercise, whether the grader's hidden checks pass and whether the code builds
the specification's network for every hidden argument set
(``tests.network_oracle``, which shares no code with the checks).
"""

from __future__ import annotations

from grader.course import reference_solutions
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
from tests.spellings import Spelling, apply

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
