"""Grading on submit with its workers on a Dask cluster: the same queue, the same pipeline, graded once.

No hub: a scratch course folder, an exchange laid out as the hub lays it out
(with this project's exchange classes), a throw-away student account whose
submission arrives in the inbound folder, and the grading service's own
objects run in this process with ``UNET_GRADING_DASK=local:2``.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pytest

from grader.course import ASSIGNMENT, COURSE_ID, NOTEBOOK, reference_solutions
from grader.dev.examples import fill
from grader.dev.scratch_course import Course
from hub.grade_on_submit.pipeline import feedback_copy
from hub.grade_on_submit.queue import GRADED, GRADING, QUEUED
from hub.grade_on_submit.service import GradingService
from hub.grade_on_submit.settings import Settings

pytestmark = pytest.mark.slow


def submit_as(inbound, student: str, notebook: str) -> str:
    """A submission as nbgrader's submit leaves it: the student's folder, the time, then the secret."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    folder = inbound / f"{student}+{ASSIGNMENT}+{stamp}+{secrets.token_urlsafe(6)}"
    folder.mkdir()
    for name, text in ((f"{NOTEBOOK}.ipynb", notebook), ("timestamp.txt", stamp),
                       ("submission_secret.txt", secrets.token_hex(64))):
        (folder / name).write_text(text)
    uid = pwd.getpwnam(student).pw_uid
    for path in [folder, *folder.iterdir()]:
        os.chown(path, uid, -1)
    return folder.name


def exchange(folder: Path) -> tuple[Path, Path]:
    """An exchange under ``folder`` laid out as the hub lays it out, and the nbgrader configuration that names it.

    Returns the inbound folder and the configuration folder (for ``JUPYTER_CONFIG_PATH``).
    """
    inbound = folder / "exchange" / COURSE_ID / "inbound"
    inbound.mkdir(parents=True)
    (inbound.parent / "feedback").mkdir()
    config = folder / "config"
    config.mkdir()
    (config / "nbgrader_config.py").write_text(
        "from hub.student.exchange import configure\n"
        "c = get_config()\nconfigure(c)\n"
        f"c.Exchange.root = {str(folder / 'exchange')!r}\nc.CourseDirectory.course_id = {COURSE_ID!r}\n")
    return inbound, config


def test_workers_on_a_dask_cluster_grade_each_submission_once(tmp_path, small_data, user, monkeypatch):
    (tmp_path / "course").mkdir()
    course = Course(tmp_path / "course", small_data)
    course.nbgrader("generate_assignment", ASSIGNMENT, "--force")
    inbound, config = exchange(tmp_path)
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(config))
    monkeypatch.setenv("CARLA_DATA_DIR", str(small_data))
    (course.root / "grade_on_submit.json").write_text(json.dumps({ASSIGNMENT: {"grade_on_submit": True}}))
    settings = Settings(course_root=course.root, exchange_inbound=inbound, workers=2, dask="local:2",
                        queue_url=f"sqlite:///{tmp_path / 'queue.sqlite'}")
    release = nbformat.read(course.release / f"{NOTEBOOK}.ipynb", as_version=4)
    folder = submit_as(inbound, user, nbformat.writes(fill(release, reference_solutions())))
    service = GradingService(settings)
    try:
        deadline = time.monotonic() + 300
        while True:
            service.scan()
            service.supervise()
            rows = service.queue.all()
            if rows and all(r.state not in (QUEUED, GRADING) for r in rows):
                break
            assert time.monotonic() < deadline, f"not graded on Dask within 5 minutes: {rows}"
            time.sleep(0.5)
    finally:
        service.stop()
    [row] = rows
    assert (row.folder, row.state, row.score, row.attempts) == (folder, GRADED, 100.0, 1)
    assert row.worker.startswith("dask-")  # a Dask task graded it, not a local worker process
    assert "Score: 100.0 / 100.0" in feedback_copy(course.root, row.id).read_text()
    assert service.workers == {}  # no local worker process was started
    assert len(list((inbound.parent / "feedback").glob("*.html"))) == 1  # released to the student, once
