"""The instructors' regrade page of the grading service: start a preview, read it, apply or cancel it.

``<prefix>regrade``: the regrades so far and a form to start one (it runs
``python -m hub.grade_on_submit.regrade preview`` as the service's account,
which reads the gradebook); ``<prefix>regrade?id=N``: one regrade, student
by student, the old and new score of every cell that changed and the
message that changed, with the buttons that apply or cancel it (a change of
the regrade's record; the grading workers do the rest).
"""

from __future__ import annotations

import asyncio
import html
import subprocess
import sys

from tornado import web

from hub.grade_on_submit.base_handler import Base
from hub.grade_on_submit.page_parts import table
from hub.grade_on_submit.regrade_report import as_data
from hub.grade_on_submit.regrade_store import RegradeRecords

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Regrade</title>
<style nonce="{nonce}">body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }} pre {{ white-space: pre-wrap; margin: 0; }}
th, td {{ text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #ccc; vertical-align: top; }}
label {{ display: block; margin: .4rem 0; }}</style>
</head><body><h1>Regrade {course}</h1>
{answer}{shown}
<h2>Start a regrade (a preview: nothing changes for students until you apply it)</h2>
<form method="post">
<input type="hidden" name="_xsrf" value="{xsrf}"><input type="hidden" name="action" value="preview">
<label>Assignment <input name="assignment" value="{assignment}" required pattern="[A-Za-z0-9_.-]+"></label>
<label><input type="radio" name="who" value="everyone" checked> Everyone with a graded submission</label>
<label><input type="radio" name="who" value="lost_in"> Those who lost points in the graded cell
<input name="cell" pattern="[A-Za-z0-9_.-]*"></label>
<label><input type="radio" name="who" value="students"> These students (commas)
<input name="students" pattern="[A-Za-z0-9_.@, -]*"></label>
<label><input type="checkbox" name="never_lower" value="1"> Never lower a score</label>
<button>Preview</button>
</form>
<h2>Regrades</h2>{regrades}
{reload}</body></html>
"""

ONE = """<h2>Regrade {id}: {stage}</h2>
<p>{who}; asked by {by} at {at}{never}. Students whose score moves: {moved}.</p>{table}{buttons}"""

BUTTONS = """<form method="post"><input type="hidden" name="_xsrf" value="{xsrf}">
<input type="hidden" name="id" value="{id}">
<button name="action" value="apply">Apply: write the gradebook, feedback and LMS for the students who move</button>
<button name="action" value="cancel">Cancel</button></form>"""


def student_rows(data: dict) -> list[dict]:
    """One table row per student of the regrade who moved, changed a message, or did not finish."""
    rows = []
    for s in data["students"]:
        if not (s["moved"] or s["cells"] or s["note"] or s["state"] not in ("previewed", "unchanged", "applied")):
            continue
        cells = "\n".join(f"{c['cell']}: {c['old']:g} -> {c['new']:g} of {c['max']:g}"
                          + (f"\n  was: {c['old_message']}\n  now: {c['new_message']}"
                             if c["old_message"] != c["new_message"] else "") for c in s["cells"])
        total = f"{s['old_total']:g} -> {s['new_total']:g}" if s["new_total"] is not None else ""
        rows.append({"student": s["student"], "state": s["state"], "total": total, "cells": cells,
                     "note": s["note"]})
    return rows


class RegradePage(Base):
    """For instructors: the regrades, one regrade's preview, and the forms that start, apply or cancel one."""

    @property
    def records(self) -> RegradeRecords:
        return RegradeRecords(self.service.queue.engine)

    def render_page(self, answer: str = "", shown_id: int | None = None) -> None:
        from grader.course import ASSIGNMENT

        records, shown, busy = self.records, "", False
        listing = []
        for regrade in records.all()[:50]:
            data = as_data(regrade, records.students(regrade.id))
            busy |= not regrade.cancelled_by and not data["stage"].startswith(("preview complete", "applied"))
            listing.append({"id": regrade.id, "assignment": regrade.assignment, "who": regrade.who,
                            "asked": f"{regrade.requested_by}, {data['requested_at']}", "stage": data["stage"],
                            "moved": len(data["moved"])})
            if regrade.id == shown_id:
                shown = self.one(data, regrade.applied_by is None and not regrade.cancelled_by)
        ids = [r["id"] for r in listing]
        links = " ".join(f'<a href="?id={i}">regrade {i}</a>' for i in ids)
        self.write(PAGE.format(
            course=html.escape(self.service.course_id), answer=answer, shown=shown,
            xsrf=html.escape(self.xsrf_token.decode()), assignment=html.escape(ASSIGNMENT),
            regrades=table(listing, ["id", "assignment", "who", "asked", "stage", "moved"]) + f"<p>{links}</p>",
            reload=(f'<script nonce="{self.csp_nonce}">setTimeout(() => location.reload(), 5000);</script>'
                    if busy and not answer else ""), nonce=self.csp_nonce))

    def one(self, data: dict, open_to_apply: bool) -> str:
        buttons = BUTTONS.format(xsrf=html.escape(self.xsrf_token.decode()), id=data["id"]) if open_to_apply else ""
        e = html.escape
        rows = "".join(f"<tr><td>{e(r['student'])}</td><td>{e(r['state'])}</td><td>{e(r['total'])}</td>"
                       f"<td><pre>{e(r['cells'])}</pre></td><td>{e(r['note'] or '')}</td></tr>"
                       for r in student_rows(data))
        body = ("<table><thead><tr><th>student</th><th>state</th><th>total</th><th>cells that changed</th>"
                f"<th>note</th></tr></thead><tbody>{rows}</tbody></table>" if rows else "<p>No student moves.</p>")
        return ONE.format(id=data["id"], stage=html.escape(data["stage"]), who=html.escape(data["who"]),
                          by=html.escape(data["requested_by"]), at=html.escape(data["requested_at"]),
                          never=", never lowering a score" if data["never_lower"] else "",
                          moved=html.escape(", ".join(data["moved"]) or "none"), table=body, buttons=buttons)

    @web.authenticated
    def get(self) -> None:
        self.require_instructor()
        shown = self.get_query_argument("id", "")
        self.render_page(shown_id=int(shown) if shown.isdigit() else None)

    @web.authenticated
    async def post(self) -> None:
        self.require_instructor()
        action = self.get_body_argument("action", "")
        if action in ("apply", "cancel"):
            regrade_id = int(self.get_body_argument("id", "0") or 0)
            try:
                if action == "apply":
                    count = self.records.apply(regrade_id, self.user_name())
                    said = f"Regrade {regrade_id}: {count} student(s) to apply."
                else:
                    self.records.cancel(regrade_id, self.user_name())
                    said = f"Regrade {regrade_id} cancelled; nothing was applied."
                role = "status"
            except ValueError as error:
                said, role = str(error), "alert"
            return self.render_page(f'<p role="{role}"><strong>{html.escape(said)}</strong></p>', regrade_id)
        if action != "preview":
            raise web.HTTPError(400, "Unknown action.")
        await self.start_preview()

    async def start_preview(self) -> None:
        who, assignment = self.get_body_argument("who", ""), self.get_body_argument("assignment", "")
        choice = {"everyone": ["--everyone"], "lost_in": ["--lost-in", self.get_body_argument("cell", "").strip()],
                  "students": ["--students", self.get_body_argument("students", "").strip()]}.get(who)
        if not assignment or choice is None or (len(choice) == 2 and not choice[1]):
            raise web.HTTPError(400, "Name the assignment and whom to regrade (a graded cell, or students).")
        command = [sys.executable, "-m", "hub.grade_on_submit.regrade", "--by", self.user_name(), "preview",
                   *choice, "--assignment", assignment,
                   *(["--never-lower"] if self.get_body_argument("never_lower", "") == "1" else [])]
        done = await asyncio.to_thread(subprocess.run, command, cwd=self.service.settings.course_root,
                                       env=self.service.worker_environment(), capture_output=True, text=True,
                                       timeout=600)
        said = (done.stdout + done.stderr).strip() or f"exit status {done.returncode}"
        role = "status" if done.returncode == 0 else "alert"
        latest = self.records.all()
        self.render_page(f'<p role="{role}"><strong>{html.escape(said)}</strong></p>',
                         latest[0].id if latest and done.returncode == 0 else None)
