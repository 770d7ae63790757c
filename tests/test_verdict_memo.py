"""Grading reuses a verdict only for byte-identical evidence, and only a check's own answer.

``grader.engine.verdict_memo`` lets a grading process skip rebuilding and
running the networks of a submission whose evidence it has judged before.
These tests hold it to that: the same evidence gets the same verdict without
the work; evidence changed in one setting is judged again (and fails); a
verdict that came from the grader failing is never reused.
"""

from __future__ import annotations

import copy
import json
from collections import OrderedDict

import pytest

from grader.dev.examples import solutions_for
from grader.engine import checks, verdict_memo
from grader.engine.checks import CHECKS, CheckFailed, Evidence, judge, probe_request
from probe import collect
from tests.conftest import notebook_namespace


@pytest.fixture
def empty_memo(monkeypatch):
    """A memo of this test's own: other tests in this process may have judged the same evidence."""
    monkeypatch.setattr(verdict_memo, "_verdicts", OrderedDict())
    monkeypatch.setattr(verdict_memo, "_checks", {})


@pytest.fixture
def rebuilds(monkeypatch) -> list[str]:
    """Every network the checks rebuild from evidence, as its JSON text."""
    seen: list[str] = []
    original = checks.rebuild

    def counting(text: str, context: str):
        seen.append(text)
        return original(text, context)

    monkeypatch.setattr(checks, "rebuild", counting)
    return seen


def verdicts(data: dict) -> dict[str, tuple[bool, str]]:
    """Every graded cell judged as grading judges it (with the memo), from a fresh copy of ``data``."""
    results = {}
    for grade_id in CHECKS:
        try:
            results[grade_id] = (True, judge(grade_id, Evidence(copy.deepcopy(data)), memo=True))
        except CheckFailed as err:
            results[grade_id] = (False, str(err))
    return results


@pytest.fixture(scope="module")
def evidence() -> dict[str, dict]:
    return {name: collect(notebook_namespace(solutions_for(name)), probe_request())
            for name in ("reference", "bug_conv_block")}


@pytest.mark.parametrize("name", ["reference", "bug_conv_block"])
def test_the_same_evidence_gets_the_same_verdict_without_rebuilding(evidence, name, empty_memo, rebuilds):
    first = verdicts(evidence[name])
    assert rebuilds, "the first judgement rebuilt no network"
    built = len(rebuilds)
    again = verdicts(evidence[name])
    assert again == first
    assert len(rebuilds) == built, "identical evidence was judged again"
    assert any(passed for passed, _ in first.values())
    if name == "bug_conv_block":
        assert not all(passed for passed, _ in first.values())


def test_evidence_changed_in_one_setting_is_judged_again_and_fails(evidence, empty_memo, rebuilds):
    data = evidence["reference"]
    assert all(passed for passed, _ in verdicts(data).values())
    changed = copy.deepcopy(data)
    grade_id = "test_conv_block_default"
    case = CHECKS[grade_id].cases[0]
    model = json.loads(changed["cases"][case.key]["model"])
    conv = next(layer for layer in model["config"]["layers"] if layer["class_name"] == "Conv2D")
    conv["config"]["filters"] += 1
    changed["cases"][case.key]["model"] = json.dumps(model)
    built = len(rebuilds)
    after = verdicts(changed)
    assert len(rebuilds) > built
    assert after[grade_id][0] is False, after[grade_id]


def test_a_verdict_from_the_grader_failing_is_not_reused(evidence, empty_memo, monkeypatch):
    def out_of_memory(text: str, context: str):
        raise MemoryError("no room to rebuild")

    with monkeypatch.context() as patch:
        patch.setattr(checks, "rebuild", out_of_memory)
        failed = verdicts(evidence["reference"])
    assert any("MemoryError" in message for _, message in failed.values()), failed
    assert all(passed for passed, _ in verdicts(evidence["reference"]).values())


def test_evidence_that_is_not_plain_json_is_never_remembered():
    assert verdict_memo.digest({"values": object()}) is None
    assert verdict_memo.recall("test_conv_block_default", CHECKS["test_conv_block_default"], None) is None
    assert verdict_memo.digest({"a": 1, "b": [2]}) == verdict_memo.digest({"b": [2], "a": 1})
