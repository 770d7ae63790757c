"""The late policy of one assignment, and the one computation of a late penalty that everything uses.

In the policy file (``grade_on_submit.json``) an assignment's ``late`` key is
absent or ``"none"`` (no penalty), or an object::

    "late": {"percent": 10, "per": "day", "floor": 50, "zero_after_hours": 72}

- ``percent`` of the student's score is taken off for each hour or day
  (``per``) late, counting every hour or day begun: one second late costs
  one step;
- ``floor``: the score after the penalty is never below this percentage of
  the score (default 0);
- ``zero_after_hours``: a submission more than this many hours late scores 0
  (optional; with it alone, ``percent`` may be left out).

Late means after the due date that applies to the student: the assignment's
in the gradebook plus the student's extension (nbgrader's
``SubmittedAssignment.total_seconds_late``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

PER_SECONDS = {"hour": 3600, "day": 86400}
KEYS = ("percent", "per", "floor", "zero_after_hours")
EXAMPLE = '{"percent": 10, "per": "day", "floor": 50, "zero_after_hours": 72}'


class LatePolicyError(ValueError):
    """The ``late`` entry is not as described above; the message says where and which key."""


@dataclass(frozen=True)
class LatePolicy:
    """No penalty by default."""

    percent: float = 0.0
    per: str = "day"
    floor: float = 0.0
    zero_after_hours: float | None = None

    @property
    def none(self) -> bool:
        return self.percent == 0 and self.zero_after_hours is None

    def describe(self) -> str:
        """The policy in one sentence, as students and instructors read it."""
        if self.none:
            return "No penalty for late submissions."
        parts = []
        if self.percent:
            floor = f", down to at most {100 - self.floor:g}% off" if self.floor else ""
            parts.append(f"{self.percent:g}% of the score off for each {self.per} or part of one late{floor}")
        if self.zero_after_hours is not None:
            parts.append(f"a score of 0 when more than {self.zero_after_hours:g} hours late")
        return "Late submissions: " + "; ".join(parts) + "."


def _number(entry: dict, key: str, where: str, low: float, high: float | None) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    limit = f"from {low:g} to {high:g}" if high is not None else f"{low:g} or more"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < low or (high is not None and value > high):
        raise LatePolicyError(f"{where}: late.{key} must be a number {limit}, not {value!r}")
    return float(value)


def parse_late(value: Any, where: str) -> LatePolicy:
    """The ``late`` entry ``value`` of the assignment at ``where`` (the file and assignment, for messages)."""
    if value is None or value == "none":
        return LatePolicy()
    if not isinstance(value, dict):
        raise LatePolicyError(f'{where}: late must be "none" or an object such as {EXAMPLE}, not {value!r}')
    unknown = sorted(set(value) - set(KEYS))
    if unknown:
        raise LatePolicyError(f"{where}: unknown key(s) late.{', late.'.join(unknown)}; "
                              f"the keys of late are {', '.join(KEYS)}")
    percent = _number(value, "percent", where, 0, 100)
    floor = _number(value, "floor", where, 0, 100)
    cutoff = _number(value, "zero_after_hours", where, 0, None)
    per = value.get("per", "day")
    if per not in PER_SECONDS:
        raise LatePolicyError(f'{where}: late.per must be "hour" or "day", not {per!r}')
    if percent is None and cutoff is None:
        raise LatePolicyError(f"{where}: late needs percent, zero_after_hours or both, as in {EXAMPLE}")
    return LatePolicy(percent or 0.0, per, floor or 0.0, cutoff)


def penalty(policy: LatePolicy, score: float, seconds_late: float) -> float:
    """The points taken off ``score`` for a submission ``seconds_late`` after the student's due date.

    Never negative and never more than the score; on time (0 seconds or
    less) costs nothing.
    """
    if seconds_late <= 0 or score <= 0 or policy.none:
        return 0.0
    if policy.zero_after_hours is not None and seconds_late > policy.zero_after_hours * 3600:
        return float(score)
    steps = math.ceil(seconds_late / PER_SECONDS[policy.per])
    fraction = min(steps * policy.percent, 100.0 - policy.floor) / 100.0
    return round(score * max(0.0, fraction), 4)


def how_late(seconds: float) -> str:
    """``seconds`` late in words: "2 days 3 hours 4 minutes", "1 second"."""
    seconds = int(math.ceil(seconds))
    parts = []
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {name}{'s' if count != 1 else ''}")
    return " ".join(parts[:3]) or "0 seconds"
