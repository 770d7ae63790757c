"""JupyterHub's own pages under a content security policy that runs only their own scripts (issue #30).

JupyterHub 6 sends ``frame-ancestors 'none'`` and nothing else, and its
templates need inline script (``window.jhdata`` in ``page.html``, the
``require([...])`` calls of each page).  Loaded by ``hub/jupyterhub_config.py``
in the hub's process, this module changes that for every page the hub renders
(login, home, token, admin, spawn and its pending page, the error pages, the
refused LTI launches):

- each ``<script>`` element written in a template the hub loads (its own and
  any in ``c.JupyterHub.template_paths``, all from this machine's files)
  gets the response's nonce when the template is loaded, before anything is
  put into it: a script that arrives through a value (a name, an error
  message) has no nonce, and the browser refuses it;
- every response carries ``script-src 'self' 'nonce-...'`` with a fresh
  nonce, ``object-src 'none'``, ``base-uri 'none'`` and ``form-action
  'self'``; violations are reported to the hub's own ``security/csp-report``,
  which logs them.

JupyterHub offers no per-response hook for either (``tornado_settings
['headers']`` is one value for every response, ``template_vars`` sees only
the user), hence the two small wrappers installed on its ``BaseHandler``.
The REST API keeps JupyterHub's own policy (``default-src 'none'``).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

SCRIPT = re.compile(r"<script\b", re.IGNORECASE)
NONCE_MARK = '<script nonce="{{ csp_nonce }}"'


def policy(nonce: str, report_uri: str) -> str:
    """The policy of a hub page: scripts from the hub's static files or carrying ``nonce``, none else."""
    return ("default-src 'self'; "
            f"script-src 'self' 'nonce-{nonce}'; "
            # Bootstrap's and the templates' style attributes; a style cannot run script.
            "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; "
            f"report-uri {report_uri}")


def nonce_scripts(source: str) -> str:
    """A template's source with the response's nonce (the ``csp_nonce`` variable) on each of its scripts."""
    return SCRIPT.sub(NONCE_MARK, source)


class NonceLoader:
    """A Jinja loader that puts the nonce on the scripts of every template it loads (see ``nonce_scripts``)."""

    def __init__(self, inner: Any):
        from jinja2 import BaseLoader

        self.inner = inner
        self._base = BaseLoader

    def get_source(self, environment: Any, template: str) -> tuple[str, str | None, Any]:
        source, filename, uptodate = self.inner.get_source(environment, template)
        return nonce_scripts(source), filename, uptodate

    def list_templates(self) -> list[str]:
        return self.inner.list_templates()

    def load(self, environment: Any, name: str, globals: Any = None) -> Any:  # noqa: A002 - Jinja's signature
        return self._base.load(self, environment, name, globals)  # type: ignore[arg-type]


def harden_environment(environment: Any) -> None:
    """Wrap ``environment``'s loader in a ``NonceLoader`` (once) and forget what it compiled before."""
    if isinstance(environment.loader, NonceLoader):
        return
    environment.loader = NonceLoader(environment.loader)
    if environment.cache is not None:
        environment.cache.clear()


def install() -> None:
    """Change JupyterHub's ``BaseHandler`` as the module's docstring says (once per process)."""
    from jupyterhub.apihandlers.base import APIHandler
    from jupyterhub.handlers.base import BaseHandler

    if getattr(BaseHandler, "_unet_hub_pages", False):
        return
    original_policy = BaseHandler.content_security_policy
    original_get_template = BaseHandler.get_template
    original_render = BaseHandler.render_template

    def csp_nonce(self: Any) -> str:
        # Made when tornado sets the default headers (the handler's first moment); one handler, one response.
        if not getattr(self, "_unet_csp_nonce", ""):
            self._unet_csp_nonce = secrets.token_urlsafe(18)
        return self._unet_csp_nonce

    def content_security_policy(self: Any) -> str:
        if isinstance(self, APIHandler):
            return original_policy.fget(self)
        return policy(csp_nonce(self), self.csp_report_uri)

    def get_template(self: Any, name: str, sync: bool = False) -> Any:
        harden_environment(self.settings["jinja2_env_sync" if sync else "jinja2_env"])
        return original_get_template(self, name, sync)

    def render_template(self: Any, name: str, sync: bool = False, **ns: Any) -> Any:
        return original_render(self, name, sync, **{**ns, "csp_nonce": csp_nonce(self)})

    BaseHandler.content_security_policy = property(content_security_policy)
    BaseHandler.get_template = get_template
    BaseHandler.render_template = render_template
    BaseHandler._unet_hub_pages = True
