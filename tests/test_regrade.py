"""The regrade's logic without grading: whom it picks, what moved, the record's states, and apply's journal.

The real regrade (a changed check, nbgrader, kill -9 of apply) is in test_regrade_course.py.
"""

from __future__ import annotations

import nbformat
import pytest

from hub.grade_on_submit.queue import Queue, open_engine
from hub.grade_on_submit.regrade_apply import StudentSwitch
from hub.grade_on_submit.regrade_plan import Who, cell_messages, decision, diff, scores_from
from hub.grade_on_submit.regrade_report import as_data, as_text
from hub.grade_on_submit.regrade_store import (
    APPLIED,
    APPLYING,
    FAILED,
    GRADING,
    KEPT,
    MAX_ATTEMPTS,
    PREVIEWED,
    SKIPPED,
    TO_APPLY,
    UNCHANGED,
    RegradeRecords,
    RegradeTasks,
)

CELLS = ["test_a", "test_b"]


def scores(a: float, b: float, message_a: str = "", penalty: float = 0.0) -> dict:
    return scores_from([("test_a", a, 10.0), ("test_b", b, 10.0)], {"test_a": message_a}, penalty)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    clock = Clock()
    engine = open_engine(f"sqlite:///{tmp_path / 'queue.sqlite'}")
    return RegradeRecords(engine, clock), RegradeTasks(engine, clock), clock


def test_who_picks_everyone_those_who_lost_points_in_a_cell_or_a_list():
    graded = {"ann": scores(10, 10), "bob": scores(4, 10), "cy": scores(10, 0)}
    assert Who(everyone=True).pick(graded, CELLS) == ["ann", "bob", "cy"]
    assert Who(lost_in="test_a").pick(graded, CELLS) == ["bob"]
    assert Who(names=("cy", "ann", "cy")).pick(graded, CELLS) == ["ann", "cy"]
    with pytest.raises(ValueError, match="no graded cell 'test_z'; the graded cells are test_a, test_b"):
        Who(lost_in="test_z").pick(graded, CELLS)
    with pytest.raises(ValueError, match="no graded submission of dan"):
        Who(names=("ann", "dan")).pick(graded, CELLS)
    with pytest.raises(ValueError, match="exactly one"):
        Who(everyone=True, names=("ann",))


def test_scores_keep_the_penalty_and_the_diff_names_cells_whose_points_or_message_changed():
    old, new = scores(4, 10, "CheckFailed: too strict", penalty=1.4), scores(10, 10, "Passed", penalty=2)
    assert (old["raw"], old["total"], old["max"]) == (14, 12.6, 20)
    change = diff("bob", old, new)
    assert list(change.cells) == ["test_a"] and change.moved
    assert change.cells["test_a"][0]["message"] == "CheckFailed: too strict"
    assert decision(change, never_lower=False) == "switch"
    # A changed message alone is shown, but moves no score.
    reworded = diff("ann", scores(10, 10, "Passed"), scores(10, 10, "Passed: all good"))
    assert reworded.any and not reworded.moved and decision(reworded, never_lower=False) == "unchanged"


def test_never_lower_keeps_a_student_whose_total_would_go_down_whole():
    lower = diff("cy", scores(10, 10), scores(10, 5))
    assert decision(lower, never_lower=True) == "kept"
    assert decision(lower, never_lower=False) == "switch"
    # Up in one cell, down in another, and up in total: the new result, whole.
    mixed = diff("cy", scores(10, 0), scores(5, 10))
    assert decision(mixed, never_lower=True) == "switch"


def test_cell_messages_are_what_each_graded_cell_printed(tmp_path):
    nb = nbformat.v4.new_notebook()
    passed = nbformat.v4.new_code_cell("x", outputs=[nbformat.v4.new_output("stream", name="stdout", text="Passed\n")])
    failed = nbformat.v4.new_code_cell("y", outputs=[nbformat.v4.new_output(
        "error", ename="CheckFailed", evalue="skip taken after pooling", traceback=[])])
    plain = nbformat.v4.new_code_cell("z", outputs=[nbformat.v4.new_output("stream", name="stdout", text="hi")])
    passed.metadata["nbgrader"] = {"grade": True, "grade_id": "test_a"}
    failed.metadata["nbgrader"] = {"grade": True, "grade_id": "test_b"}
    nb.cells = [passed, failed, plain]
    nbformat.write(nb, tmp_path / "unet.ipynb")
    assert cell_messages(tmp_path / "unet.ipynb") == {"test_a": "Passed",
                                                      "test_b": "CheckFailed: skip taken after pooling"}
    assert cell_messages(tmp_path / "missing.ipynb") == {}


def test_a_regrade_is_a_preview_until_applied_and_its_rows_are_leased(store):
    records, tasks, clock = store
    prepared = []
    regrade_id = records.create("a1", "prof", "everyone", False,
                                [("ann", "t1", scores(10, 10)), ("bob", "t2", scores(4, 10))], prepare=prepared.append)
    assert prepared == [regrade_id] and tasks.pending()
    first = tasks.claim("w1", lease=30)
    assert (first.student, first.state, first.attempts) == ("ann", GRADING, 1)
    with pytest.raises(ValueError, match="still previewing 2 student"):
        records.apply(regrade_id, "prof")
    # w1 is killed: once its lease runs out, another worker previews ann again; w1 can no longer finish.
    second = tasks.claim("w2", lease=30)
    assert second.student == "bob"
    clock.now += 31
    again = tasks.claim("w2", lease=30)
    assert (again.student, again.attempts) == ("ann", 2)
    assert not tasks.finish(first, "w1", PREVIEWED, new=scores(10, 10))
    assert tasks.finish(again, "w2", PREVIEWED, new=scores(10, 10))
    assert tasks.finish(second, "w2", PREVIEWED, new=scores(10, 10))
    data = as_data(records.get(regrade_id), records.students(regrade_id))
    assert data["moved"] == ["bob"] and "preview complete: nothing has changed" in data["stage"]
    assert "1 of 2 student(s) move: bob." in as_text(data) and "test_a: 4 -> 10 of 10" in as_text(data)
    assert records.apply(regrade_id, "prof") == 2
    assert {r.state for r in records.students(regrade_id)} == {TO_APPLY}
    assert records.get(regrade_id).applied_by == "prof"
    claimed = tasks.claim("w3", lease=30)
    assert claimed.state == APPLYING and claimed.new is not None


def test_a_row_whose_worker_keeps_dying_fails_with_the_reason_and_an_apply_can_be_asked_again(store):
    records, tasks, clock = store
    regrade_id = records.create("a1", "prof", "ann", False, [("ann", "t1", scores(4, 10))])
    for _ in range(MAX_ATTEMPTS):
        assert tasks.claim("w", lease=5) is not None
        clock.now += 6
    assert tasks.claim("w", lease=5) is None
    [row] = records.students(regrade_id)
    assert row.state == FAILED and "nothing of the student's was changed" in row.note
    # A preview that failed is not applied: apply has nothing to do for it.
    assert records.apply(regrade_id, "prof") == 0


def test_cancel_stops_a_preview_and_is_refused_once_applied(store):
    records, tasks, _ = store
    regrade_id = records.create("a1", "prof", "ann", False, [("ann", "t1", scores(4, 10))])
    records.cancel(regrade_id, "prof")
    assert tasks.claim("w", lease=5) is None and not tasks.pending()
    with pytest.raises(ValueError, match="cancelled by prof"):
        records.apply(regrade_id, "prof")


def test_a_regrade_whose_private_course_cannot_be_made_is_recorded_as_such_and_runs_nothing(store):
    records, tasks, _ = store

    def broken(regrade_id: int) -> None:
        raise OSError("No space left on device")

    with pytest.raises(OSError):
        records.create("a1", "prof", "ann", False, [("ann", "t1", scores(4, 10))], prepare=broken)
    [regrade] = records.all()
    assert regrade.cancelled_by == "its preparation failed: OSError: No space left on device"
    assert records.students(regrade.id) == [] and not tasks.pending()


class RecordingSwitch(StudentSwitch):
    """Apply's steps on the record's side only; ``crash_in`` makes one step die once (a kill -9 there)."""

    crash_in: str | None = None
    done: list[str] = []

    def write_gradebook(self) -> None:
        if self.crash_in == "write_gradebook":
            RecordingSwitch.crash_in = None
            raise KeyboardInterrupt("killed")
        self.done.append("write_gradebook")

    def follow(self, old_total: float, new_total: float) -> str:
        self.done.append("follow")
        return f"{old_total:g} -> {new_total:g}"


def prepared_course(tmp_path, store, old, new, submitted="t1"):
    records, tasks, _ = store
    (tmp_path / "submitted" / "bob" / "a1").mkdir(parents=True)
    (tmp_path / "submitted" / "bob" / "a1" / "timestamp.txt").write_text(submitted)
    regrade_id = records.create("a1", "prof", "bob", True, [("bob", "t1", old)])
    row = tasks.claim("w", 30)
    tasks.finish(row, "w", PREVIEWED, new=new)
    records.apply(regrade_id, "prof")
    for folder, text in (("autograded", "old"), (f"grade_on_submit/regrades/{regrade_id}/autograded", "new")):
        (tmp_path / folder / "bob" / "a1").mkdir(parents=True)
        (tmp_path / folder / "bob" / "a1" / "unet.ipynb").write_text(text)
    return records, tasks, regrade_id


def switch(tmp_path, store, regrade_id):
    records, tasks, _ = store
    row = tasks.claim("w", 30)
    return row, RecordingSwitch(tmp_path, "sqlite://", Queue(tasks.engine), records.get(regrade_id), row)


def test_an_apply_killed_half_way_is_finished_by_the_next_worker_with_the_same_result(tmp_path, store):
    records, tasks, regrade_id = prepared_course(tmp_path, store, scores(4, 10), scores(10, 10))
    RecordingSwitch.done, RecordingSwitch.crash_in = [], "write_gradebook"
    row, first = switch(tmp_path, store, regrade_id)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    # The journal says the student is being switched; the new notebook is already in place, the score not yet.
    assert records.students(regrade_id)[0].state == APPLYING
    assert (tmp_path / "autograded" / "bob" / "a1" / "unet.ipynb").read_text() == "new"
    store[2].now += 31
    row, second = switch(tmp_path, store, regrade_id)
    assert second.run() == (APPLIED, "14 -> 20")
    assert RecordingSwitch.done == ["write_gradebook", "follow"]
    assert (tmp_path / "autograded" / "bob" / "a1" / "unet.ipynb").read_text() == "new"
    replaced = tmp_path / f"grade_on_submit/regrades/{regrade_id}/replaced/bob/a1/unet.ipynb"
    assert replaced.read_text() == "old"


def test_apply_leaves_alone_a_student_who_submitted_since_one_kept_and_one_unchanged(tmp_path, store):
    records, tasks, regrade_id = prepared_course(tmp_path, store, scores(4, 10), scores(10, 10), submitted="t2")
    RecordingSwitch.done = []
    _, step = switch(tmp_path, store, regrade_id)
    state, note = step.run()
    assert state == SKIPPED and "submitted again since the preview" in note and RecordingSwitch.done == []
    assert (tmp_path / "autograded" / "bob" / "a1" / "unet.ipynb").read_text() == "old"
    row = records.students(regrade_id)[0]
    lower = RecordingSwitch(tmp_path, "sqlite://", Queue(tasks.engine), records.get(regrade_id),
                            row.__class__(**{**row.__dict__, "new": scores(4, 2)}))
    assert lower.run()[0] == KEPT
    same = RecordingSwitch(tmp_path, "sqlite://", Queue(tasks.engine), records.get(regrade_id),
                           row.__class__(**{**row.__dict__, "new": scores(4, 10)}))
    assert same.run() == (UNCHANGED, None) and RecordingSwitch.done == []


def test_apply_skips_a_student_whose_new_submission_waits_to_be_graded(tmp_path, store):
    records, tasks, regrade_id = prepared_course(tmp_path, store, scores(4, 10), scores(10, 10))
    Queue(tasks.engine).add("bob+a1+t2", "bob", "a1", "t2", per_hour=0)
    _, step = switch(tmp_path, store, regrade_id)
    state, note = step.run()
    assert state == SKIPPED and "being graded with the course as it is now" in note


def test_the_regrade_page_escapes_what_students_wrote_and_shows_the_preview_to_instructors_only(store, tmp_path):
    import asyncio
    import re
    from types import SimpleNamespace

    import tornado.httpclient
    import tornado.httpserver
    import tornado.testing
    import tornado.web

    from hub.grade_on_submit.regrade_page import PAGE, RegradePage

    records, tasks, _ = store
    regrade_id = records.create("a1", "prof", "everyone", True, [("bob", "t1", scores(4, 10, "<img src=x>"))])
    row = tasks.claim("w", 30)
    tasks.finish(row, "w", PREVIEWED, new=scores(10, 10, "</pre><script>alert(1)</script>"))
    service = SimpleNamespace(queue=SimpleNamespace(engine=tasks.engine), course_id="course", prefix="/",
                              settings=SimpleNamespace(instructors=("prof",), course_root=tmp_path),
                              problem=lambda instructor=True: None)

    class AsUser(RegradePage):
        def get_current_user(self):
            return {"name": self.request.headers.get("X-User", "ann"), "groups": []}

        @property
        def xsrf_token(self) -> bytes:
            return b"token<1>"

    async def fetch(user: str) -> tornado.httpclient.HTTPResponse:
        app = tornado.web.Application([("/regrade", AsUser)], grading_service=service)
        sock, port = tornado.testing.bind_unused_port()
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets([sock])
        answer = await tornado.httpclient.AsyncHTTPClient().fetch(
            f"http://127.0.0.1:{port}/regrade?id={regrade_id}", headers={"X-User": user}, raise_error=False)
        server.stop()
        return answer

    page, refused = asyncio.run(fetch("prof")), asyncio.run(fetch("bob"))
    assert refused.code == 403
    body = page.body.decode()
    assert "Students whose score moves: bob." in body and "test_a: 4 -&gt; 10 of 10" in body
    assert "&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<img src=x>" not in body
    assert 'value="apply"' in body and 'value="token&lt;1&gt;"' in body and ", never lowering a score" in body
    nonce = re.search(r"'nonce-([^']+)'", page.headers["Content-Security-Policy"]).group(1)
    assert all(f'nonce="{nonce}"' in tag for tag in re.findall(r"<(?:script|style)\b[^>]*>", body))
    assert all('nonce="{nonce}"' in tag for tag in re.findall(r"<(?:script|style)\b[^>]*>", PAGE))


def test_a_grading_worker_stops_when_a_regrade_is_asked_for_so_a_fresh_one_grades_with_the_course_now(
        tmp_path, monkeypatch):
    import time

    from grader.engine import grading
    from hub.grade_on_submit import worker
    from hub.grade_on_submit.settings import Settings

    monkeypatch.setattr(grading, "machine_problem", lambda setup: None)
    settings = Settings(tmp_path, tmp_path / "inbound", f"sqlite:///{tmp_path / 'queue.sqlite'}", poll_seconds=0.01)
    records = RegradeRecords(open_engine(settings.queue_url))
    calls = []

    def keep_going() -> bool:
        calls.append(time.time())
        if len(calls) == 3:
            records.create("a1", "prof", "everyone", False, [])
        return len(calls) < 10

    worker.run("w1", settings, keep_going)
    # Idle polls (no submission, no regrade row) until the regrade is asked for; then it returns at once.
    assert len(calls) == 3


def test_a_regrade_asked_for_while_a_worker_was_starting_stops_it_too(tmp_path, monkeypatch):
    """The worker's checks are as old as its process: a regrade after the process began but before the worker
    was ready (its start-up is slow on a busy machine) stops it at its first look."""
    from grader.engine import grading
    from hub.grade_on_submit import worker
    from hub.grade_on_submit.settings import Settings

    monkeypatch.setattr(grading, "machine_problem", lambda setup: None)
    settings = Settings(tmp_path, tmp_path / "inbound", f"sqlite:///{tmp_path / 'queue.sqlite'}", poll_seconds=0.01)
    RegradeRecords(open_engine(settings.queue_url)).create("a1", "prof", "everyone", False, [])
    assert worker.process_started() < RegradeTasks(open_engine(settings.queue_url)).latest_request()
    calls = []
    worker.run("w1", settings, lambda: calls.append(1) or len(calls) < 10)
    assert len(calls) == 1


def test_workers_starting_together_on_postgresql_all_find_the_regrade_tables():
    import threading

    from tests.postgres import postgres_server

    with postgres_server() as url:
        start, failed = threading.Barrier(8), []

        def open_them() -> None:
            engine = open_engine(url)
            start.wait()
            try:
                RegradeTasks(engine)
            except Exception as err:  # noqa: BLE001 - what a worker would have died of
                failed.append(err)

        threads = [threading.Thread(target=open_them) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failed == []
