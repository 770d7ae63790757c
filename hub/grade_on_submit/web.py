"""The grading service's pages, behind the hub's login (JupyterHub OAuth).

- ``<prefix>``: the logged-in student's own submissions, refreshed every
  second while one is queued or being graded (``api/mine``);
- ``<prefix>feedback/<id>``: the feedback of one of their own submissions,
  when the policy shows it;
- ``<prefix>queue``: for instructors, every submission: waiting, running,
  failed with the reason, and the policies in force (``api/queue``);
- ``<prefix>extensions``: for instructors, due dates per student
  (``hub.grade_on_submit.extension_page``);
- ``<prefix>regrade``: for instructors, regrades with a preview (``hub.grade_on_submit.regrade_page``).
"""

from __future__ import annotations

import html

from jupyterhub.services.auth import HubOAuthCallbackHandler
from jupyterhub.utils import url_path_join
from tornado import web

from hub.grade_on_submit import views
from hub.grade_on_submit.base_handler import Base, PagesService
from hub.grade_on_submit.extension_page import ExtensionsPage
from hub.grade_on_submit.page_parts import script_value, table
from hub.grade_on_submit.pipeline import feedback_copy
from hub.grade_on_submit.queue import FAILED, GRADING, QUEUED
from hub.grade_on_submit.regrade_page import RegradePage

STUDENT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Your gradings</title>
<style nonce="{nonce}">
body {{ font-family: system-ui, sans-serif; margin: 2rem; max-width: 70rem; }}
table {{ border-collapse: collapse; width: 100%; }} th, td {{ text-align: left; padding: .4rem .6rem; }}
tr {{ border-bottom: 1px solid #ccc; }} .note {{ color: #444; }} [data-state=failed] .state {{ font-weight: bold; }}
</style></head><body>
<h1>Your submissions of {course}, graded on submit</h1>
<p>Each submission you make in the Assignments tab appears here within seconds and moves from
<em>queued</em> to <em>grading</em> to <em>graded</em>. Only you can see this page's contents.</p>
<p>{policies}</p>
{problem}{clutter}
<table><thead><tr><th>Submitted</th><th>Assignment</th><th>State</th><th>Score</th><th>Feedback</th>
<th>Details</th></tr></thead><tbody id="submissions"><tr><td colspan="6">Loading…</td></tr></tbody></table>
{instructor_link}
<script nonce="{nonce}">
const api = {api_url}, feedbackBase = {feedback_url}, xsrf = {xsrf};
function cell(row, text) {{
  const td = document.createElement("td"); td.textContent = text; row.append(td); return td;
}}
async function refresh() {{
  let items;
  // A request from a page's script must show the page's xsrf token (JupyterHub's cookie rules).
  try {{ items = await (await fetch(api, {{headers: {{"X-XSRFToken": xsrf}}}})).json(); }}
  catch (e) {{ setTimeout(refresh, 5000); return; }}
  const body = document.getElementById("submissions");
  body.replaceChildren();
  if (!items.length) {{ const tr = body.insertRow(); cell(tr, "No submissions yet.").colSpan = 6; }}
  for (const s of items) {{
    const tr = body.insertRow();
    tr.dataset.state = s.state; tr.dataset.id = s.id;
    cell(tr, s.submitted); cell(tr, s.assignment);
    cell(tr, s.label).className = "state";
    cell(tr, s.score === null ? "" : `${{s.score}} / ${{s.max_score}}`).className = "score";
    const fb = cell(tr, "");
    if (s.feedback) {{ const a = document.createElement("a"); a.href = feedbackBase + s.id; a.textContent = "feedback";
                      fb.append(a); }}
    cell(tr, [s.note, s.reason].filter(Boolean).join(" ")).className = "note";
  }}
  const busy = items.some(s => s.state === "queued" || s.state === "grading");
  setTimeout(refresh, busy ? 1000 : 10000);
}}
refresh();
</script></body></html>
"""

QUEUE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Grading queue</title>
<style nonce="{nonce}">body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }}
th, td {{ text-align: left; padding: .3rem .6rem; border-bottom: 1px solid #ccc; vertical-align: top; }}</style>
</head><body><h1>Grading queue of {course}</h1>
{problem}
<p>{counts}</p>
<h2>Policies</h2><pre>{policies}</pre>
<h2>Waiting, running and failed</h2>{open_rows}
<h2>Not queued</h2>{refused}
<h2>Recently finished</h2>{done_rows}
<p>The same as JSON: <a href="{api_url}">api/queue</a>. This page reloads every 5 seconds.
Extensions and due dates per student: <a href="extensions">extensions</a>.
Regrade after a change of the checks, with a preview: <a href="regrade">regrade</a>.</p>
<script nonce="{nonce}">setTimeout(() => location.reload(), 5000);</script>
</body></html>
"""


# Folders not queued that the queue page lists (api/queue has them all): a student's clutter must not bury the rest.
SHOWN_REFUSED = 200


class StudentPage(Base):
    """The logged-in person's own submissions (the table fills itself from ``api/mine``)."""

    def clutter_html(self) -> str:
        said = self.service.inbox.clutter_of(self.user_name())
        return f'<p role="status">{html.escape(said)}</p>' if said else ""

    @web.authenticated
    def get(self) -> None:
        prefix = self.service.prefix
        link = (f'<p><a href="{url_path_join(prefix, "queue")}">The whole queue (instructors)</a></p>'
                if self.is_instructor() else "")
        self.write(STUDENT_PAGE.format(course=html.escape(self.service.course_id), problem=self.problem_html(),
                                       policies=html.escape(self.service.policy_summary()),
                                       clutter=self.clutter_html(),
                                       api_url=script_value(url_path_join(prefix, "api/mine")),
                                       feedback_url=script_value(url_path_join(prefix, "feedback/")),
                                       xsrf=script_value(self.xsrf_token.decode()),
                                       instructor_link=link, nonce=self.csp_nonce))


class MineApi(Base):
    """The logged-in person's own submissions as JSON, as the policy lets them see them."""

    @web.authenticated
    def get(self) -> None:
        self.write_json(self.service.student_view(self.user_name()))


class Feedback(Base):
    """The feedback page of one of the logged-in person's own submissions, when it may be shown."""

    @web.authenticated
    def get(self, submission_id: str) -> None:
        shown = {s["id"]: s for s in self.service.student_view(self.user_name())}.get(int(submission_id))
        if shown is None or not shown["feedback"]:
            raise web.HTTPError(404, "No feedback of yours with that number can be shown now.")
        page = feedback_copy(self.service.settings.course_root, int(submission_id))
        if not page.is_file():
            raise web.HTTPError(404, "This submission's feedback page is missing; your instructor can make it again "
                                     "with generate_feedback.")
        # The page holds the student's own outputs: shown as a document, its scripts do not run.
        self.set_header("Content-Security-Policy", "sandbox; script-src 'none'; object-src 'none'; "
                                                   "frame-ancestors 'self'")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(page.read_bytes())


class QueuePage(Base):
    """The whole queue, for instructors."""

    @web.authenticated
    def get(self) -> None:
        self.require_instructor()
        rows = self.service.instructor_view()
        columns = ["id", "student", "assignment", "submitted", "label", "attempts", "worker", "queued_at",
                   "waiting_until", "score", "reason", "detail"]
        for row in rows:
            row["submitted"] = row["timestamp"]
        open_rows = [r for r in rows if r["state"] in (QUEUED, GRADING, FAILED)]
        done = [r for r in rows if r["state"] not in (QUEUED, GRADING, FAILED)][-50:]
        counts = {state: sum(r["state"] == state for r in rows) for state in views.LABELS}
        not_queued = {**self.service.inbox.refused, **self.service.inbox.stalled()}
        refused = [{"folder": f, "why": w} for f, w in sorted(not_queued.items())[:SHOWN_REFUSED]]
        if len(not_queued) > SHOWN_REFUSED:
            refused.append({"folder": f"... and {len(not_queued) - SHOWN_REFUSED} more",
                            "why": "all of them in api/queue"})
        self.write(QUEUE_PAGE.format(
            course=html.escape(self.service.course_id), problem=self.problem_html(),
            counts=html.escape(", ".join(f"{views.LABELS[s]}: {n}" for s, n in counts.items())),
            policies=html.escape(self.service.policy_text()), open_rows=table(open_rows, columns),
            refused=table(refused, ["folder", "why"]), done_rows=table(done, columns + ["phases"]),
            api_url=html.escape(url_path_join(self.service.prefix, "api/queue")), nonce=self.csp_nonce))


class QueueApi(Base):
    """The whole queue as JSON, for instructors."""

    @web.authenticated
    def get(self) -> None:
        self.require_instructor()
        self.write_json({"problem": self.service.problem(), "submissions": self.service.instructor_view(),
                         "refused": self.service.inbox.refused, "incomplete": self.service.inbox.stalled()})


def application(service: PagesService) -> web.Application:
    """The service's tornado application under its hub prefix."""
    prefix = service.prefix
    return web.Application([
        (prefix, StudentPage),
        (url_path_join(prefix, "api/mine"), MineApi),
        (url_path_join(prefix, r"feedback/(\d+)"), Feedback),
        (url_path_join(prefix, "queue"), QueuePage),
        (url_path_join(prefix, "api/queue"), QueueApi),
        (url_path_join(prefix, "extensions"), ExtensionsPage),
        (url_path_join(prefix, "regrade"), RegradePage),
        (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
    ], grading_service=service, cookie_secret=service.cookie_secret)
