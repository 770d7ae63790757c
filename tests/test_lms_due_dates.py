"""A student's own due date from the LMS launch (Canvas's $Canvas.assignment.dueAt.iso8601), against the local LMS."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub.grade_on_submit import extensions
from hub.lms import due_dates
from hub.lms.testing.platform import new_person
from tests.test_lms_launch import launch, platform, verifier, verify  # noqa: F401 - the fixtures are used


def test_the_due_date_the_lms_sends_becomes_the_students_unless_an_instructor_decided(platform, verifier,  # noqa: F811
                                                                                        tmp_path):
    ada = platform.enrol("bio101", new_person("Ada", "Byron"))
    assert verify(verifier, launch(platform, ada)).due_at == ""
    platform.set_due_date("bio101", ada.sub, "2026-12-08T12:00:00Z")
    result = verify(verifier, launch(platform, ada))
    assert result.due_at == "2026-12-08T12:00:00Z"
    assert due_dates.take(tmp_path, "ada", result.assignment, result.due_at)
    assert extensions.recorded(tmp_path, "unet_segmentation", "ada")["due"] == "2026-12-08T12:00:00+00:00"
    assert not due_dates.take(tmp_path, "ada", result.assignment, result.due_at)  # the next launch changes nothing
    extensions.record(tmp_path, "unet_segmentation", "ada", datetime(2026, 12, 10, tzinfo=UTC), "prof")
    assert not due_dates.take(tmp_path, "ada", result.assignment, "2026-12-09T00:00:00Z")
    assert extensions.recorded(tmp_path, "unet_segmentation", "ada")["by"] == "prof"


@pytest.mark.parametrize("sent", ["", "$Canvas.assignment.dueAt.iso8601", "next tuesday"])
def test_an_empty_or_unexpanded_due_date_records_nothing(tmp_path, sent):
    assert not due_dates.take(tmp_path, "ada", "unet_segmentation", sent)
    assert not (tmp_path / extensions.FILE_NAME).exists()
