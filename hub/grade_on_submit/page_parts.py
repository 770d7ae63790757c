"""Pieces of HTML the service pages share (the grading service's and the LMS service's), importing nothing heavy."""

from __future__ import annotations

import html
import json
import secrets


def table(rows: list[dict], columns: list[str]) -> str:
    """An HTML table of ``rows`` (dicts) with ``columns``, every value escaped; None shows as empty."""
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c) if r.get(c) is not None else ''))}</td>"
                                    for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def script_value(value: object) -> str:
    """``value`` as a JavaScript literal that is safe inside a ``<script>`` element (no ``</script>``, no ``<!--``)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page_policy(nonce: str) -> str:
    """The content security policy of a service page: no script or style but the page's own (by nonce).

    Whatever a student or an LMS managed to put into the page's text cannot run: inline script, event
    handler attributes, ``javascript:`` links and scripts from elsewhere are all refused by the browser.
    """
    return (f"default-src 'self'; script-src 'nonce-{nonce}'; style-src 'self' 'nonce-{nonce}'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'")


class HardenedPage:
    """Mixin for a service's tornado handlers: a fresh CSP nonce per response, the policy, ``nosniff``,
    and ``write_json`` for the APIs (``application/json``)."""

    csp_nonce = ""

    def set_default_headers(self) -> None:
        self.csp_nonce = secrets.token_urlsafe(18)
        set_header = self.set_header  # type: ignore[attr-defined]
        set_header("Content-Security-Policy", page_policy(self.csp_nonce))
        set_header("X-Content-Type-Options", "nosniff")
        set_header("Cache-Control", "no-store")

    def write_json(self, data: object) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")  # type: ignore[attr-defined]
        self.write(json.dumps(data))  # type: ignore[attr-defined]
