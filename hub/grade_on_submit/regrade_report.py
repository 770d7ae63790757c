"""A regrade as the instructor reads it: where it stands, and per student what moved (plain data and text)."""

from __future__ import annotations

from datetime import UTC, datetime

from hub.grade_on_submit.regrade_plan import Change, diff
from hub.grade_on_submit.regrade_store import APPLY_DONE, GRADING, PREVIEW_DONE, QUEUED, Regrade, StudentRow


def when(seconds: float | None) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if seconds else ""


def stage(regrade: Regrade, rows: list[StudentRow]) -> str:
    """Where the regrade is, in words."""
    if regrade.cancelled_by:
        return f"cancelled by {regrade.cancelled_by}"
    left = sum(r.state in (QUEUED, GRADING) for r in rows)
    if left:
        return f"previewing: {len(rows) - left} of {len(rows)} student(s) done"
    if regrade.applied_by is None:
        return "preview complete: nothing has changed for any student until it is applied"
    open_rows = sum(r.state not in APPLY_DONE for r in rows)
    if open_rows:
        return f"applying (asked by {regrade.applied_by} at {when(regrade.applied_at)}): {open_rows} left"
    return f"applied by {regrade.applied_by} at {when(regrade.applied_at)}"


def change_of(row: StudentRow) -> Change | None:
    return diff(row.student, row.old, row.new) if row.old and row.new else None


def student_lines(row: StudentRow) -> dict:
    """One student of a regrade: old and new totals, the cells that changed, what became of them."""
    change = change_of(row)
    cells = []
    if change is not None:
        for grade_id, (before, after) in change.cells.items():
            cells.append({"cell": grade_id, "old": before["points"], "new": after["points"], "max": after["max"],
                          "old_message": before["message"], "new_message": after["message"]})
    return {"student": row.student, "state": row.state, "submitted": row.submitted,
            "old_total": row.old["total"] if row.old else None,
            "new_total": row.new["total"] if row.new else None,
            "max": (row.new or row.old or {}).get("max"), "moved": bool(change and change.moved),
            "cells": cells, "note": row.note}


def as_data(regrade: Regrade, rows: list[StudentRow]) -> dict:
    """The whole regrade as JSON-able data (the page and ``regrade show --json``)."""
    students = [student_lines(r) for r in rows]
    return {"id": regrade.id, "assignment": regrade.assignment, "who": regrade.who,
            "requested_by": regrade.requested_by, "requested_at": when(regrade.requested_at),
            "never_lower": regrade.never_lower, "stage": stage(regrade, rows),
            "previewed": all(r.state in PREVIEW_DONE or r.state in APPLY_DONE for r in rows),
            "applied_by": regrade.applied_by, "applied_at": when(regrade.applied_at),
            "moved": [s["student"] for s in students if s["moved"]], "students": students}


def as_text(data: dict) -> str:
    """The regrade for a terminal: the stage, then each student whose result moved or did not finish."""
    lines = [f"Regrade {data['id']} of {data['assignment']} ({data['who']}), asked by {data['requested_by']} at "
             f"{data['requested_at']}{', never lowering a score' if data['never_lower'] else ''}: {data['stage']}.",
             f"{len(data['moved'])} of {len(data['students'])} student(s) move: {', '.join(data['moved']) or 'none'}."]
    for s in data["students"]:
        if not s["moved"] and not s["note"] and not s["cells"]:
            continue
        total = f"{s['old_total']:g} -> {s['new_total']:g} of {s['max']:g}" if s["new_total"] is not None else ""
        lines.append(f"- {s['student']} [{s['state']}] {total} {s['note'] or ''}".rstrip())
        for c in s["cells"]:
            lines.append(f"    {c['cell']}: {c['old']:g} -> {c['new']:g} of {c['max']:g}")
            if c["old_message"] != c["new_message"]:
                lines.append(f"      was: {c['old_message'][:300]}")
                lines.append(f"      now: {c['new_message'][:300]}")
    return "\n".join(lines)
