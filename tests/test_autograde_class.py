"""grader.tools.autograde_class without kernels: who is graded, and SQLite writes from many processes."""

from __future__ import annotations

import os
import sqlite3
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from nbgrader.api import Gradebook

from grader.course import gradebook_url, make_alembic_findable
from grader.engine.grading import wait_for_sqlite_writes
from grader.tools.autograde_class import _result, submitted_students

WRITERS = 4
STUDENTS_EACH = 20


def test_students_are_the_submitted_folders_that_match(tmp_path):
    for student in ("bob", "alice", "amir"):
        (tmp_path / "submitted" / student / "unet_segmentation").mkdir(parents=True)
    (tmp_path / "submitted" / "carol" / "other_assignment").mkdir(parents=True)
    (tmp_path / "submitted" / "stray.txt").write_text("")
    assert submitted_students(tmp_path) == ["alice", "amir", "bob"]
    assert submitted_students(tmp_path, pattern="a*") == ["alice", "amir"]
    assert submitted_students(tmp_path, "other_assignment") == ["carol"]


def _hold_write_lock(db_file: str, seconds: float) -> None:
    """Keep the database's write lock for ``seconds``, like a slow write on a network disk."""
    connection = sqlite3.connect(db_file, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    time.sleep(seconds)
    connection.execute("COMMIT")


def _add_students(db_url: str, writer: int) -> int:
    wait_for_sqlite_writes()
    time.sleep(1)  # start writing while the lock is held
    for i in range(STUDENTS_EACH):
        with Gradebook(db_url) as gb:
            gb.update_or_create_student(f"w{writer}-s{i}", first_name=str(i))
            gb.update_or_create_student(f"w{writer}-s{i}", last_name=str(writer))
    return writer


def test_concurrent_sqlite_writers_queue_and_lose_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", os.environ["PATH"])  # restored after the test
    make_alembic_findable()
    db_url = gradebook_url(tmp_path)
    with Gradebook(db_url):
        pass  # create the tables once, as generate_assignment does before grading
    with ProcessPoolExecutor(WRITERS + 1, mp_context=get_context("spawn")) as pool:
        # Longer than sqlite3's own 5 s wait, which would end in "database is locked".
        holder = pool.submit(_hold_write_lock, str(tmp_path / "gradebook.db"), 7)
        assert sorted(pool.map(_add_students, [db_url] * WRITERS, range(WRITERS))) == list(range(WRITERS))
        holder.result()
    with Gradebook(db_url) as gb:
        students = {s.id: (s.first_name, s.last_name) for s in gb.students}
    assert students == {f"w{w}-s{i}": (str(i), str(w)) for w in range(WRITERS) for i in range(STUDENTS_EACH)}


def _die() -> None:
    os._exit(3)


def test_a_worker_that_dies_is_a_failed_outcome_not_a_crash():
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        outcome = _result(pool.submit(_die), "alice")
    assert (outcome.student, outcome.ok) == ("alice", False)
    assert "the grading worker failed: BrokenProcessPool" in outcome.failure
