"""The instructors' extensions page of the grading service: the due dates per student, and a form to change one.

``<prefix>extensions``: every recorded due date (an instructor's or the
LMS's) and a form; granting runs ``python -m hub.grade_on_submit.grant`` as
the service's account (the course folder's owner), which recomputes the
penalty, the student's row and feedback, and lets the LMS service post the
changed score once.  The page shows that command's answer.
"""

from __future__ import annotations

import asyncio
import html
import json
import subprocess
import sys
from pathlib import Path

from tornado import web

from hub.grade_on_submit.base_handler import Base
from hub.grade_on_submit.extensions import FILE_NAME
from hub.grade_on_submit.page_parts import table

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Extensions</title>
<style nonce="{nonce}">body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }}
th, td {{ text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #ccc; }}
label {{ display: block; margin: .4rem 0; }}</style>
</head><body><h1>Due dates per student in {course}</h1>
{answer}
<h2>Grant or take back an extension</h2>
<form method="post">
<input type="hidden" name="_xsrf" value="{xsrf}">
<label>Student (account) <input name="student" required pattern="[A-Za-z0-9_.@-]+"></label>
<label>Assignment <input name="assignment" value="{assignment}" required pattern="[A-Za-z0-9_.-]+"></label>
<label>Due date for this student, UTC (e.g. 2026-12-08T12:00) <input name="until"></label>
<label><input type="checkbox" name="remove" value="1"> Back to the assignment's due date</label>
<button>Save</button>
</form>
<p>A graded submission's late penalty is recomputed at once (its notebook is not run again); the student's
score, feedback page and the LMS follow. A due date the LMS sends never replaces one set here.</p>
<h2>Recorded due dates</h2>{recorded}
</body></html>
"""


def recorded_rows(course_root: Path) -> list[dict]:
    """The course's recorded due dates, one row per assignment and student."""
    try:
        data = json.loads((course_root / FILE_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return [{"assignment": a, "student": s, "due": e.get("due"), "by": e.get("by"), "at": e.get("at")}
            for a, students in sorted(data.items()) for s, e in sorted(students.items())]


class ExtensionsPage(Base):
    """For instructors: the recorded due dates and the form that changes one."""

    def render_page(self, answer: str = "") -> None:
        from grader.course import ASSIGNMENT

        rows = recorded_rows(self.service.settings.course_root)
        self.write(PAGE.format(course=html.escape(self.service.course_id), answer=answer,
                               xsrf=html.escape(self.xsrf_token.decode()), assignment=html.escape(ASSIGNMENT),
                               recorded=table(rows, ["assignment", "student", "due", "by", "at"]),
                               nonce=self.csp_nonce))

    @web.authenticated
    def get(self) -> None:
        self.require_instructor()
        self.render_page()

    @web.authenticated
    async def post(self) -> None:
        self.require_instructor()
        student, assignment = self.get_body_argument("student", ""), self.get_body_argument("assignment", "")
        until, remove = self.get_body_argument("until", "").strip(), self.get_body_argument("remove", "") == "1"
        if not student or not assignment or (not until and not remove):
            raise web.HTTPError(400, "Name the student, the assignment and a due date (or take the extension back).")
        command = [sys.executable, "-m", "hub.grade_on_submit.grant", student, "--assignment", assignment,
                   "--by", self.user_name(), *(["--remove"] if remove else ["--until", until])]
        done = await asyncio.to_thread(subprocess.run, command, cwd=self.service.settings.course_root,
                                       env=self.service.worker_environment(), capture_output=True, text=True,
                                       timeout=600)
        said = (done.stdout + done.stderr).strip() or f"exit status {done.returncode}"
        role = "status" if done.returncode == 0 else "alert"
        self.render_page(f'<p role="{role}"><strong>{html.escape(said)}</strong></p>')
