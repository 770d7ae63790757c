"""Pieces of HTML the service pages share (the grading service's and the LMS service's), importing nothing heavy."""

from __future__ import annotations

import html


def table(rows: list[dict], columns: list[str]) -> str:
    """An HTML table of ``rows`` (dicts) with ``columns``, every value escaped; None shows as empty."""
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c) if r.get(c) is not None else ''))}</td>"
                                    for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
