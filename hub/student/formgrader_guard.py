"""Formgrader, hardened for a course whose names come from an LMS: nothing a student or an LMS sends runs.

nbgrader 0.9's formgrader prints students' first and last names into its
pages unescaped (its Jinja environment has no autoescape, and the grading
page's macros print ``resources.first_name`` and ``last_name`` raw), serves
its JSON API as ``text/html``, and sends no content security policy beyond
``frame-ancestors``.  A student whose LMS name is ``<script>...`` would run
script in the instructor's browser.  This server extension, loaded in the
course service after formgrader, changes that without copying its templates:

- formgrader's own templates are rendered with autoescape on, and the names
  handed to the grading page are escaped first;
- each ``<script>`` element written in nbgrader's formgrader templates gets
  the response's nonce, and the two ``onclick`` attributes there become
  listeners; scripts anywhere else (a student's notebook outputs, a name)
  get none, and the policy ``script-src 'self' 'nonce-...'`` refuses them;
- the notebook on the grading page is rendered with nbconvert's HTML
  sanitizer on (no script, no event handler from a student's outputs);
- the API answers ``application/json`` (``X-Content-Type-Options: nosniff``
  is Jupyter Server's default already).

The fix to offer nbgrader: ``autoescape=True`` in ``FormgradeExtension``'s
``Environment``, ``| e`` on the names in ``formgrade_macros.html.j2``,
``Content-Type: application/json`` in ``BaseApiHandler``, and no inline
event handlers in the templates (listeners in the page's scripts).
"""

from __future__ import annotations

import contextvars
import re
import secrets
from pathlib import Path
from typing import Any

from markupsafe import escape

# The nonce of the response being rendered (the render is synchronous, inside the handler's own task).
_nonce: contextvars.ContextVar[str] = contextvars.ContextVar("csp_nonce", default="")
SCRIPT = re.compile(r"<script\b", re.IGNORECASE)
HANDLER_ATTRIBUTE = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
# nbgrader 0.9.6's inline event handlers: onclick="f();" or onclick="f(true);", f one of these page functions.
ONCLICK = re.compile(r'\sonclick="(?P<call>[A-Za-z_]+)\((?P<arg>true|false)?\);?"', re.IGNORECASE)
CLICK_FUNCTIONS = {"toggle_name", "toggleAllNames", "createAssignmentModal", "createStudentModal"}
# A script put before the template's first one: the handlers, as one listener on the document.  Each function is
# named, not looked up on window: a top-level ``let`` (toggleAllNames) is global but no property of window.
LISTENERS = ("<script>\ndocument.addEventListener(\"click\", function (event) {\n"
             "  var target = event.target.closest(\"[data-unet-onclick]\");\n  if (!target) return;\n"
             "  var arg = target.dataset.unetArg === undefined ? undefined : target.dataset.unetArg === \"true\";\n"
             "  var calls = {" + ", ".join(f"{name}: function (a) {{ {name}(a); }}" for name in sorted(CLICK_FUNCTIONS))
             + "};\n  if (calls[target.dataset.unetOnclick]) calls[target.dataset.unetOnclick](arg);\n});\n</script>\n")
# The names that reach the grading page's template; nbconvert's environment does not escape.
NAME_KEYS = ("first_name", "last_name", "student", "assignment_id", "notebook_id", "notebook_path")


def current_nonce() -> str:
    """The nonce of the response being rendered (a Jinja global: ``{{ csp_nonce() }}``)."""
    return _nonce.get()


def policy(nonce: str) -> str:
    """Formgrader's content security policy: its own scripts (by nonce, or from its own static files) only."""
    return ("default-src 'self'; "
            f"script-src 'self' 'nonce-{nonce}'; "
            # Bootstrap and nbconvert's output use style attributes; styles cannot run script.
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; "
            "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'")


def _data_attributes(match: re.Match[str]) -> str:
    call, arg = match["call"], match["arg"]
    if call not in CLICK_FUNCTIONS:
        return match[0]  # left as it is: the policy refuses to run it, and the unit test names it
    return f' data-unet-onclick="{call}"' + (f' data-unet-arg="{arg}"' if arg else "")


def harden_template(source: str) -> str:
    """A formgrader template's source with a nonce on each of its own scripts and its inline handlers gone."""
    rewritten = ONCLICK.sub(_data_attributes, source)
    if rewritten != source:
        first = SCRIPT.search(rewritten)
        if first is None:
            raise ValueError("a formgrader template with an inline event handler has no script beside which to "
                             "put its listener: nbgrader changed, see hub/student/formgrader_guard.py")
        rewritten = rewritten[:first.start()] + LISTENERS + rewritten[first.start():]
    return SCRIPT.sub('<script nonce="{{ csp_nonce() }}"', rewritten)


class NonceLoader:
    """A Jinja loader that hardens the templates under ``root`` (formgrader's own) and passes others as they are."""

    def __init__(self, inner: Any, root: str):
        from jinja2 import BaseLoader

        self.inner, self.root = inner, str(Path(root).resolve())
        self._base = BaseLoader

    def get_source(self, environment: Any, template: str) -> tuple[str, str | None, Any]:
        source, filename, uptodate = self.inner.get_source(environment, template)
        if filename and str(Path(filename).resolve()).startswith(self.root):
            source = harden_template(source)
        return source, filename, uptodate

    def list_templates(self) -> list[str]:
        return self.inner.list_templates()

    def load(self, environment: Any, name: str, globals: Any = None) -> Any:  # noqa: A002 - Jinja's signature
        return self._base.load(self, environment, name, globals)  # type: ignore[arg-type]


def guarded_environment(template_path: str) -> Any:
    """Formgrader's own template environment: autoescape on, scripts with the response's nonce."""
    from jinja2 import Environment, FileSystemLoader

    environment = Environment(loader=NonceLoader(FileSystemLoader([template_path]), template_path),  # type: ignore[arg-type]
                              autoescape=True)
    environment.globals["csp_nonce"] = current_nonce
    return environment


def guarded_exporter_class() -> type:
    """nbconvert's HTMLExporter for the grading page: nonces on formgrader's scripts, outputs sanitized."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers

    class GuardedExporter(HTMLExporter):
        def _create_environment(self):
            environment = super()._create_environment()
            environment.loader = NonceLoader(environment.loader, handlers.template_path)
            environment.globals["csp_nonce"] = current_nonce
            return environment

        def from_filename(self, filename, resources=None, **kw):
            resources = dict(resources or {})
            for key in NAME_KEYS:
                if isinstance(resources.get(key), str):
                    resources[key] = escape(resources[key])
            return super().from_filename(filename, resources=resources, **kw)

    return GuardedExporter


def install() -> None:
    """Change formgrader's handlers as the module's docstring says (once per process)."""
    from nbgrader.server_extensions.formgrader import base, handlers

    if getattr(base.BaseHandler, "_unet_guarded", False):
        return
    exporter_class = guarded_exporter_class()

    def nonce(self: Any) -> str:
        if not getattr(self, "_unet_nonce", ""):
            self._unet_nonce = secrets.token_urlsafe(18)
        return self._unet_nonce

    def content_security_policy(self: Any) -> str:
        return policy(nonce(self))

    def render(self: Any, name: str, **ns: Any) -> str:
        environment = self.settings.get("unet_guarded_jinja2_env")
        if environment is None:
            environment = self.settings["unet_guarded_jinja2_env"] = guarded_environment(handlers.template_path)
        _nonce.set(nonce(self))
        return environment.get_template(name).render(**ns)

    def exporter(self: Any) -> Any:
        guarded = self.settings.get("unet_guarded_exporter")
        if guarded is None:
            guarded = exporter_class(config=self.settings["nbgrader_exporter"].config)
            guarded.sanitize_html = True
            self.settings["unet_guarded_exporter"] = guarded
        _nonce.set(nonce(self))
        return guarded

    def api_headers(self: Any) -> None:
        original_default_headers(self)
        self.set_header("Content-Type", "application/json; charset=utf-8")

    original_default_headers = base.BaseApiHandler.set_default_headers
    base.BaseHandler.content_security_policy = property(content_security_policy)
    base.BaseHandler.render = render
    base.BaseHandler.exporter = property(exporter)
    base.BaseApiHandler.set_default_headers = api_headers
    base.BaseHandler._unet_guarded = True


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "unet_hub.formgrader_guard"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    install()
    serverapp.log.info("formgrader: names escaped, scripts only by nonce, JSON API as application/json")
