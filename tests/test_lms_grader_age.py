"""A grader role lasts a fixed time after the launch that gave it (issue #30: a lost role is taken away)."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

from hub.lms.authenticator import CourseLTI13Authenticator
from hub.lms.grader_launches import GraderLaunches, groups_after_refresh

GRADERS, STUDENTS = "formgrade-c", "nbgrader-c"
HOUR = 3600.0


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_grader_launch_is_timed_and_any_other_launch_ends_it(tmp_path):
    clock = Clock()
    store = GraderLaunches(tmp_path / "lms" / "grader_launches.sqlite", clock=clock)
    assert store.age("ta") is None
    store.record("ta", grader=True)
    clock.now += 2 * HOUR
    assert store.age("ta") == 2 * HOUR
    # The hub restarts: the table is read again.
    assert GraderLaunches(tmp_path / "lms" / "grader_launches.sqlite", clock=clock).age("ta") == 2 * HOUR
    store.record("ta", grader=False)  # the LMS now sends the TA as a learner
    assert store.age("ta") is None


def test_the_graders_group_goes_once_the_launch_is_too_old():
    groups = {GRADERS, STUDENTS}
    assert groups_after_refresh(groups, GRADERS, 7 * HOUR, 8 * HOUR) is None
    assert groups_after_refresh(groups, GRADERS, 8 * HOUR, 8 * HOUR) == [STUDENTS]
    assert groups_after_refresh({GRADERS}, GRADERS, None, 8 * HOUR) == []  # no launch on record
    assert groups_after_refresh({STUDENTS}, GRADERS, None, 8 * HOUR) is None  # a student is left alone


def test_the_hubs_periodic_refresh_takes_the_graders_group_away_after_the_limit(tmp_path):
    """``refresh_user`` as JupyterHub calls it; its answer's groups replace the person's (``manage_groups``)."""
    clock = Clock()
    store = GraderLaunches(tmp_path / "g.sqlite", clock=clock)
    authenticator = SimpleNamespace(layout=SimpleNamespace(instructors_group=GRADERS), grader_launches=store,
                                    grader_launch_hours=8.0, log=logging.getLogger("test"))
    ta = SimpleNamespace(name="ta", groups=[SimpleNamespace(name=GRADERS)])
    learner = SimpleNamespace(name="s", groups=[SimpleNamespace(name=STUDENTS)])

    def refresh(user):
        return asyncio.run(CourseLTI13Authenticator.refresh_user(authenticator, user))  # type: ignore[arg-type]

    store.record("ta", grader=True)
    clock.now += 7.9 * HOUR
    assert refresh(ta) is True and refresh(learner) is True
    clock.now += 0.2 * HOUR
    assert refresh(ta) == {"name": "ta", "groups": []}
    store.record("ta", grader=True)  # a new launch from the LMS as a grader
    assert refresh(ta) is True
