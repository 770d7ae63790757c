"""Late policies and extensions without running a notebook: the policy file, the penalty arithmetic, the records.

The penalty is the one computation (``late_policy.penalty``) that batch
autograde, grading on submit, the feedback page and the LMS all read; its
edges are here: exactly on time, one second late, the floor, the cut-off,
and an extension granted after grading (the gradebook's penalty recomputed).
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from nbgrader.api import Gradebook

from grader.course import make_alembic_findable
from hub.grade_on_submit import extensions
from hub.grade_on_submit.grant import grant
from hub.grade_on_submit.late_feedback import explain
from hub.grade_on_submit.late_policy import LatePolicy, how_late, parse_late, penalty
from hub.grade_on_submit.policy import PolicyError, PolicyFile, parse

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")
HOUR, DAY = 3600, 86400
TEN_PER_HOUR = LatePolicy(percent=10, per="hour", floor=50)


@pytest.mark.parametrize("seconds, taken", [
    (0, 0), (-5, 0),            # exactly on time, early
    (1, 10),                    # one second late costs one whole hour's step
    (HOUR, 10), (HOUR + 1, 20),
    (4 * HOUR, 40), (5 * HOUR, 50), (9 * HOUR, 50),  # the floor: never below half the score
])
def test_percent_per_hour_with_a_floor(seconds, taken):
    assert penalty(TEN_PER_HOUR, 80, seconds) == pytest.approx(80 * taken / 100)


def test_per_day_and_the_cut_off():
    policy = LatePolicy(percent=20, per="day", zero_after_hours=48)
    assert penalty(policy, 100, 1) == 20
    assert penalty(policy, 100, DAY) == 20
    assert penalty(policy, 100, DAY + 1) == 40
    assert penalty(policy, 100, 48 * HOUR) == 40          # exactly on the cut-off is not after it
    assert penalty(policy, 100, 48 * HOUR + 1) == 100     # one second after: zero
    assert penalty(LatePolicy(zero_after_hours=0), 70, 1) == 70
    assert penalty(LatePolicy(percent=100, per="day"), 70, 1) == 70  # never more than the score
    assert penalty(LatePolicy(), 70, 10 * DAY) == 0
    assert penalty(policy, 0, DAY) == 0


def test_the_policy_file_reads_late_and_says_where_a_mistake_is():
    text = json.dumps({"a1": {"grade_on_submit": True, "late": {"percent": 10, "per": "hour", "floor": 50}},
                       "a2": {"late": "none"}, "a3": {"late": {"zero_after_hours": 24}}})
    policies = parse(text, "course/grade_on_submit.json")
    assert policies["a1"].late == TEN_PER_HOUR
    assert policies["a2"].late.none and policies["a3"].late == LatePolicy(zero_after_hours=24)
    bad = {
        '{"a1": {"late": {"percent": 10, "per": "week"}}}': ("'a1'", "late.per", "'week'"),
        '{"a1": {"late": {"percent": 110}}}': ("'a1'", "late.percent", "from 0 to 100"),
        '{"a1": {"late": {"percent": true}}}': ("'a1'", "late.percent"),
        '{"a1": {"late": {"floor": 50}}}': ("'a1'", "needs percent, zero_after_hours"),
        '{"a1": {"late": {"percent": 5, "cutoff": 3}}}': ("'a1'", "late.cutoff"),
        '{"a1": {"late": {"zero_after_hours": -1}}}': ("'a1'", "late.zero_after_hours"),
        '{"a1": {"late": 10}}': ("'a1'", 'late must be "none" or an object'),
    }
    for text, expected in bad.items():
        with pytest.raises(PolicyError) as raised:
            parse(text, "course/grade_on_submit.json")
        assert "course/grade_on_submit.json" in str(raised.value)
        for part in expected:
            assert part in str(raised.value), (text, str(raised.value))
    with pytest.raises(ValueError):
        parse_late({"percent": float("nan")}, "x")


def test_a_bad_edit_keeps_the_last_good_late_policy(tmp_path):
    path = tmp_path / "grade_on_submit.json"
    path.write_text('{"a1": {"late": {"percent": 10, "per": "hour", "floor": 50}}}')
    policies = PolicyFile(path)
    policies.refresh()
    path.write_text('{"a1": {"late": {"percent": "ten"}}}')
    policies.refresh()
    assert policies.of("a1").late == TEN_PER_HOUR
    assert policies.problem and "late.percent" in policies.problem and "previous policy stays" in policies.problem


def test_how_late_and_the_policy_in_words():
    assert how_late(1) == "1 second" and how_late(0.2) == "1 second"
    assert how_late(DAY + 2 * HOUR + 61) == "1 day 2 hours 1 minute"
    assert TEN_PER_HOUR.describe() == ("Late submissions: 10% of the score off for each hour or part of one late, "
                                       "down to at most 50% off.")
    assert "0 when more than 24 hours late" in LatePolicy(zero_after_hours=24).describe()


def test_the_lms_never_replaces_an_instructors_due_date(tmp_path):
    due = datetime(2026, 12, 8, 12, tzinfo=UTC)
    assert extensions.record(tmp_path, "a1", "ann", due, extensions.LMS)
    assert not extensions.record(tmp_path, "a1", "ann", due, extensions.LMS)       # the same again: no change
    assert extensions.record(tmp_path, "a1", "ann", due + timedelta(days=1), "prof")
    assert not extensions.record(tmp_path, "a1", "ann", due, extensions.LMS)
    assert extensions.recorded(tmp_path, "a1", "ann")["due"] == (due + timedelta(days=1)).isoformat()
    assert extensions.record(tmp_path, "a1", "ann", None, "prof")
    assert extensions.recorded(tmp_path, "a1", "ann") is None
    assert json.loads((tmp_path / extensions.FILE_NAME).read_text()) == {}


DUE = datetime(2026, 12, 1, 12, 0, 0)


@pytest.fixture(scope="module")
def gradebook_file(tmp_path_factory):
    """A gradebook with one 100-point assignment due at DUE, ann 3 hours late and scored 80 (made once: slow)."""
    make_alembic_findable()  # nbgrader's new gradebook runs alembic, from this environment
    path = tmp_path_factory.mktemp("book") / "gradebook.db"
    with Gradebook(f"sqlite:///{path}") as gb:
        gb.add_assignment("a1", duedate=DUE)
        gb.add_notebook("unet", "a1")
        gb.add_grade_cell("all", "unet", "a1", max_score=100, cell_type="code")
        gb.add_student("ann")
        gb.add_student("bea")
        gb.add_submission("a1", "ann", timestamp=DUE + timedelta(hours=3))
        grade = gb.find_grade("all", "unet", "a1", "ann")
        grade.auto_score, grade.needs_manual_grade = 80, False
        gb.db.commit()
    return path


@pytest.fixture
def course(tmp_path, gradebook_file):
    """A copy of the gradebook above, with the late policy 10% an hour, down to half the score."""
    shutil.copy(gradebook_file, tmp_path / "gradebook.db")
    (tmp_path / "grade_on_submit.json").write_text(json.dumps(
        {"a1": {"late": {"percent": 10, "per": "hour", "floor": 50}}}))
    return tmp_path, f"sqlite:///{tmp_path / 'gradebook.db'}"


def test_an_extension_after_grading_recomputes_the_penalty_in_the_gradebook(course):
    root, url = course
    late = grant(root, url, "a1", "ann", None, "prof").after
    assert (late.seconds_late, late.penalty, late.score_after_penalty) == (3 * HOUR, 24, 56)
    granted = grant(root, url, "a1", "ann", (DUE + timedelta(hours=2)).replace(tzinfo=UTC), "prof")
    assert (granted.before.penalty, granted.after.penalty, granted.after.score_after_penalty) == (24, 8, 72)
    with Gradebook(url) as gb:
        submission = gb.find_submission("a1", "ann")
        # nbgrader's own fields hold it: formgrader and nbgrader export see the same.
        assert submission.extension == timedelta(hours=2)
        assert submission.late_submission_penalty == 8
    said = explain(granted.after, TEN_PER_HOUR)
    assert said == ("Submitted 2026-12-01 15:00:00 UTC, 1 hour late: your due date with your extension (the "
                    "assignment's is 2026-12-01 12:00:00 UTC) is 2026-12-01 14:00:00 UTC. Late submissions: 10% "
                    "of the score off for each hour or part of one late, down to at most 50% off. 8 points are "
                    "taken off, so the score is 72 of 100 instead of 80.")
    assert "10% of the score off" in explain(granted.after, TEN_PER_HOUR, points=False)
    assert "72" not in explain(granted.after, TEN_PER_HOUR, points=False)
    on_time = grant(root, url, "a1", "ann", (DUE + timedelta(hours=3)).replace(tzinfo=UTC), "prof").after
    assert (on_time.seconds_late, on_time.penalty) == (0, 0)
    assert explain(on_time, TEN_PER_HOUR).endswith("on time: your due date with your extension (the assignment's "
                                                   "is 2026-12-01 12:00:00 UTC) is 2026-12-01 15:00:00 UTC.")
    back = grant(root, url, "a1", "ann", None, "prof").after
    assert (back.penalty, back.extension) == (24, None)


def test_an_extension_before_a_submission_is_kept_until_it_comes(course):
    root, url = course
    granted = grant(root, url, "a1", "bea", (DUE + timedelta(days=1)).replace(tzinfo=UTC), "prof")
    assert granted.after is None and "no submission yet" in granted.summary()
    with Gradebook(url) as gb:
        gb.add_submission("a1", "bea", timestamp=DUE + timedelta(hours=20))
        assert extensions.apply_to_gradebook(gb, root, "a1", "bea")
        assert gb.find_submission("a1", "bea").total_seconds_late == 0
        assert gb.find_submission("a1", "bea").extension == timedelta(days=1)


def test_no_extension_without_an_assignment_due_date(course):
    root, url = course
    with Gradebook(url) as gb:
        gb.update_or_create_assignment("a1", duedate=None)
    with pytest.raises(extensions.ExtensionError, match="no due date"):
        grant(root, url, "a1", "ann", DUE.replace(tzinfo=UTC), "prof")
