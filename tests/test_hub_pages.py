"""The content security policies of JupyterHub's pages and of the Jupyter servers on the hub (issue #30), without a hub.

In Chromium, on a real hub: tests/test_hub.py (``test_hub_and_lab_pages_run_only_their_own_scripts``).
"""

from __future__ import annotations

import base64
import hashlib
import re
import sys
from pathlib import Path

import pytest

from hub.hub_pages import nonce_scripts, policy
from hub.student.page_policy import installed_templates, script_hash, server_policy, static_inline_scripts

HUB_TEMPLATES = Path(sys.prefix) / "share" / "jupyterhub" / "templates"


def test_every_script_of_jupyterhubs_templates_gets_the_nonce_and_none_runs_another_way():
    templates = sorted(HUB_TEMPLATES.glob("*.html"))
    assert len(templates) > 10, HUB_TEMPLATES
    scripts = 0
    for path in templates:
        hardened = nonce_scripts(path.read_text())
        tags = re.findall(r"<script\b[^>]*>", hardened, re.IGNORECASE)
        scripts += len(tags)
        assert all('nonce="{{ csp_nonce }}"' in tag for tag in tags), path.name
        # What a nonce cannot cover: an event handler attribute or a javascript: URL would be refused.
        assert not re.search(r"\son[a-z]+\s*=\s*[\"']", hardened), path.name
        assert "javascript:" not in hardened.lower(), path.name
    assert scripts > 10


def test_the_nonce_reaches_the_rendered_page_and_a_script_in_a_value_gets_none():
    from jinja2 import DictLoader, Environment

    from hub.hub_pages import harden_environment

    environment = Environment(loader=DictLoader({"page.html": "<script>var u = {{ name | tojson }};</script>"
                                                              "<p>{{ name }}</p>{% block x %}{{ html | safe }}"
                                                              "{% endblock %}"}), autoescape=True)
    harden_environment(environment)
    harden_environment(environment)  # once only
    page = environment.get_template("page.html").render(csp_nonce="N0nce", name="</script><script>alert(1)",
                                                        html="<script>alert(2)</script>")
    assert page.count('nonce="N0nce"') == 1
    assert "<script>alert(2)</script>" in page  # a value's script, even one let through unescaped, has no nonce
    assert "'nonce-N0nce'" in policy("N0nce", "/hub/security/csp-report")
    assert "unsafe-inline" not in policy("N0nce", "/r").split("style-src")[0]


def test_only_static_inline_scripts_are_hashed():
    template = ('<script id="jupyter-config-data" type="application/json">{"a": 1}</script>'
                '<script defer src="/main.js"></script>'
                "<script>console.log({{ message }})</script>"
                "<script type='text/javascript'>\n  var a = 1;\n</script>")
    assert static_inline_scripts(template) == ["\n  var a = 1;\n"]
    expected = base64.b64encode(hashlib.sha256(b"\n  var a = 1;\n").digest()).decode()
    assert script_hash("\n  var a = 1;\n") == f"'sha256-{expected}'"
    text = server_policy([script_hash("x")])
    assert f"script-src 'self' 'unsafe-eval' {script_hash('x')};" in text
    assert "unsafe-inline" not in text.split("style-src")[0] and "object-src 'none'" in text


def test_jupyterlabs_page_script_is_among_the_hashes():
    lab = [path for path in installed_templates() if path.parts[-3:] == ("lab", "static", "index.html")]
    if not lab:
        pytest.skip("no JupyterLab application in this environment")
    [body] = static_inline_scripts(lab[0].read_text())
    assert "Remove token from URL" in body
