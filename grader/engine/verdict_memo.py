"""Verdicts a grading process has already reached, reused for a submission that gave the very same evidence.

Judging the U-Net's cells rebuilds each network the probe reported and runs
it beside the specification's: about a second of the grader's CPU per
submission, more than the rest of the grader's own work.  A class holds many
submissions that build exactly the same networks, and since every kernel is
fresh (forked from a template that never built a layer), two such notebooks
report byte-identical evidence: the same configurations down to the layer
names, the same answers to every call.

A verdict is a function of three things only: the graded cell, the check
(its code, the specification) and the evidence.  So this process remembers
each verdict by the cell, the check object and a SHA-256 digest of the
evidence's canonical JSON; the same three give the same verdict without the
work.  Evidence that differs in a single character is judged afresh.  Only a
check's own answers are kept (its success, or the ``CheckFailed`` it
raised): a verdict that came from the grader failing in an unexpected way
(out of memory while rebuilding, say) is never reused.  A worker that loads
changed checks gets new check objects, so nothing judged by the old ones
applies to it.  Only grading asks for it (``judge(..., memo=True)``); the
checks' own tests, which patch them in place, judge afresh every time.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

# Enough for every distinct network of several large classes; an entry is a message of a few hundred bytes.
LIMIT = 4096

_lock = threading.Lock()
_verdicts: OrderedDict[tuple[str, int, str], tuple[bool, str]] = OrderedDict()
# The checks the keys were made with, held so that an id cannot be reused by another object.
_checks: dict[int, Any] = {}


def digest(data: Any) -> str | None:
    """SHA-256 of ``data``'s canonical JSON (sorted keys, no spaces); None when it is not plain JSON data.

    Evidence from a kernel always is JSON; evidence collected in the test's own
    process may hold other objects, and no stand-in for them (a ``repr``
    shortens arrays) could tell two of them apart, so those are never remembered.
    """
    try:
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def recall(grade_id: str, check: Any, evidence_digest: str | None) -> tuple[bool, str] | None:
    """The verdict reached before for this cell, check and evidence: (passed, message), or None."""
    if evidence_digest is None:
        return None
    key = (grade_id, id(check), evidence_digest)
    with _lock:
        if _checks.get(id(check)) is not check or key not in _verdicts:
            return None
        _verdicts.move_to_end(key)
        return _verdicts[key]


def remember(grade_id: str, check: Any, evidence_digest: str | None, verdict: tuple[bool, str]) -> None:
    """Keep ``verdict`` for this cell, check and evidence (the least recently used go beyond ``LIMIT``)."""
    if evidence_digest is None:
        return
    with _lock:
        _checks[id(check)] = check
        _verdicts[(grade_id, id(check), evidence_digest)] = verdict
        _verdicts.move_to_end((grade_id, id(check), evidence_digest))
        while len(_verdicts) > LIMIT:
            _verdicts.popitem(last=False)
