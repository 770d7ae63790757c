"""The content security policy of every Jupyter server on the hub: students' servers and the course service.

Jupyter Server sends ``frame-ancestors 'self'`` and nothing else.  Set as
``c.ServerApp.tornado_settings["headers"]["Content-Security-Policy"]`` (one
value for every response: Jupyter Server has no per-response nonce), this
policy allows scripts from the server's own static files and, of the inline
scripts its page templates hold, only the static ones, by their SHA-256 hash
(JupyterLab's and Notebook 7's "remove the token from the URL" script), and
``'unsafe-eval'``, without which JupyterLab does not start (``server_policy``).  The
hashes are read from the templates installed in this environment when the
server starts, so an upgrade that changes a script changes its hash with it.
A template's script that has a value put into it (the error pages' "scroll
to the end of the traceback") has no hash and does not run; those pages still
show everything.  Page data (``jupyter-config-data``) is JSON, which a policy
never runs.

Formgrader's pages replace this policy with their own nonce one
(``unet_hub.formgrader_guard``); the REST API adds ``default-src 'none'``.
Nothing else here: students can read this module.
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
from collections.abc import Iterable
from pathlib import Path

# An inline script element: its attributes and its text.  Templates are this environment's own files.
INLINE_SCRIPT = re.compile(r"<script\b(?P<attributes>[^>]*)>(?P<body>.*?)</script\s*>", re.IGNORECASE | re.DOTALL)
NOT_SCRIPT_TYPES = ("application/json", "text/template", "text/x-template")


def static_inline_scripts(template: str) -> list[str]:
    """The texts of ``template``'s inline scripts that run as written: no ``src``, no Jinja inside, not data."""
    scripts = []
    for match in INLINE_SCRIPT.finditer(template):
        attributes = match["attributes"].lower()
        if re.search(r"\bsrc\s*=", attributes) or any(kind in attributes for kind in NOT_SCRIPT_TYPES):
            continue
        body = match["body"]
        if "{{" in body or "{%" in body or "{#" in body:
            continue  # its text differs per response: no hash can name it
        scripts.append(body)
    return scripts


def script_hash(body: str) -> str:
    """A policy's source expression for an inline script whose text is ``body``."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode("ascii") + "'"


def installed_templates(prefix: Path = Path(sys.prefix)) -> list[Path]:
    """The page templates the servers of this environment render: JupyterLab's, Notebook 7's, Jupyter Server's."""
    found = [prefix / "share" / "jupyter" / "lab" / "static" / "index.html"]
    for package in ("notebook", "jupyter_server", "jupyterlab_server"):
        folder = _package_folder(package)
        if folder is not None:
            found.extend(sorted((folder / "templates").glob("*.html")))
    return [path for path in found if path.is_file()]


def _package_folder(name: str) -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def script_hashes(templates: Iterable[Path]) -> list[str]:
    """The hashes of every static inline script in ``templates``, each once, in a stable order."""
    hashes = {script_hash(body) for path in templates for body in static_inline_scripts(path.read_text())}
    return sorted(hashes)


def server_policy(hashes: Iterable[str]) -> str:
    """The policy: the server's own static scripts and the hashed inline ones; no other script, no plugin."""
    return ("default-src 'self'; "
            # 'unsafe-eval': JupyterLab validates its settings with JSON schemas compiled to functions (ajv), and
            # without it no plugin with settings starts.  It lets running script evaluate strings; it lets no
            # script element or event handler put into a page run.
            f"script-src 'self' 'unsafe-eval' {' '.join(hashes)}; "
            # JupyterLab and notebook outputs use style elements and attributes; a style cannot run script.
            "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
            # connect-src 'self' covers the server's websockets (kernels, terminals) too.
            "connect-src 'self'; worker-src 'self' blob:; frame-src 'self' blob:; "
            # No report-uri: Jupyter Server's report handler refuses a browser's report (no _xsrf in it).
            "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'")


def configured_policy() -> str:
    """The policy for the server starting now (a server's ``jupyter_server_config.py`` calls this)."""
    return server_policy(script_hashes(installed_templates()))
