"""The float tolerance of the functional checks, measured: equivalent spellings against real mistakes.

``python -m bench.tolerance`` builds, for every hidden argument set, the
network of every equivalent spelling in ``tests/spellings.py`` (and of the
reference itself, rebuilt from its configuration as the grader rebuilds a
student's), gives it the specification's weights and prints the largest
relative difference from the specification's results, per layer and of the
whole outputs.  It does the same for the spellings that are mistakes the
structure alone does not show, and prints the smallest difference among
those.  ``functional_checks.RELATIVE_TOLERANCE`` must lie between the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import functional_checks
from grader.course import reference_solutions
from grader.engine import specification
from grader.engine.checks import CHECKS, Case, Evidence, probe_request
from probe import collect
from tests.conftest import notebook_namespace
from tests.spellings import SLOTS, WHOLE, Spelling, apply

CASES: dict[str, Case] = {case.key: case for check in CHECKS.values() for case in check.cases}


@dataclass
class Figures:
    """The largest differences of equivalent networks and the smallest of mistakes, with where they were seen."""

    equivalent_layer: float = 0.0
    equivalent_outputs: float = 0.0
    equivalent_worst: str = ""
    mistake_smallest: float = float("inf")
    mistake_name: str = ""
    networks: int = 0


def _evidence(spellings: list[Spelling]) -> Evidence:
    return Evidence(collect(notebook_namespace(apply(spellings, reference_solutions())), probe_request()))


def _function(spelling: Spelling | None) -> set[str]:
    return {"conv_block", "upsampling_block", "unet_model"} if spelling is None else {spelling.exercise}


def measure(equivalents: list[Spelling] | None = None, mistakes: list[Spelling] | None = None) -> Figures:
    """The figures over ``equivalents`` (default: every correct spelling) and ``mistakes`` (default: all)."""
    equivalents = [s for s in SLOTS + WHOLE if s.same] if equivalents is None else equivalents
    mistakes = [s for s in SLOTS if s.same is False] if mistakes is None else mistakes
    figures = Figures()
    for spelling in [None, *equivalents]:
        evidence = _evidence([] if spelling is None else [spelling])
        for case in CASES.values():
            if case.function not in _function(spelling):
                continue
            spec, _ = specification.model_for(case.request())
            found = functional_checks.deviations(evidence.model(case, ""), spec)
            name = "the reference, rebuilt" if spelling is None else spelling.name
            assert found is not None, f"{name} does not match the specification's graph in {case.key}"
            figures.networks += 1
            if max(found.values()) >= max(figures.equivalent_layer, figures.equivalent_outputs):
                figures.equivalent_worst = name
            figures.equivalent_layer = max(figures.equivalent_layer, found["layer"])
            figures.equivalent_outputs = max(figures.equivalent_outputs, found["outputs"])
    for spelling in mistakes:
        smallest = _smallest_difference(spelling)
        if smallest is not None and smallest < figures.mistake_smallest:
            figures.mistake_smallest, figures.mistake_name = smallest, spelling.name
    return figures


def _smallest_difference(spelling: Spelling) -> float | None:
    """The largest layer difference of a mistake's network in the call where it shows least; None if unmatched."""
    try:
        evidence = _evidence([spelling])
    except Exception:  # noqa: BLE001 - a mistake that does not even build shows nothing to measure
        return None
    seen = []
    for case in CASES.values():
        if case.function != spelling.exercise:
            continue
        try:
            student = evidence.model(case, "")
        except Exception:  # noqa: BLE001 - refused or not built: the structural checks judge it
            continue
        found = functional_checks.deviations(student, specification.model_for(case.request())[0])
        if found is not None and found["layer"] > 0:
            seen.append(found["layer"])
    return min(seen) if seen else None


def main() -> Figures:
    figures = measure()
    print(f"{figures.networks} equivalent networks: largest relative difference per layer "
          f"{figures.equivalent_layer:.3g}, of the whole outputs {figures.equivalent_outputs:.3g} "
          f"({figures.equivalent_worst})")
    print(f"mistakes: smallest relative difference {figures.mistake_smallest:.3g} ({figures.mistake_name})")
    print(f"tolerance: {functional_checks.RELATIVE_TOLERANCE:g}")
    return figures


if __name__ == "__main__":
    main()
