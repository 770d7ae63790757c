"""The service pages' headers: a fresh nonce policy per response, nosniff, JSON as JSON (issue #30)."""

from __future__ import annotations

import asyncio
import re

import tornado.httpclient
import tornado.httpserver
import tornado.testing
import tornado.web

from hub.grade_on_submit import web as grading_web
from hub.grade_on_submit.page_parts import HardenedPage, script_value
from hub.lms import web as lms_web


class Page(HardenedPage, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(f'<script nonce="{self.csp_nonce}">1</script>')


class Api(HardenedPage, tornado.web.RequestHandler):
    def get(self) -> None:
        self.write_json({"name": "<script>x</script>"})


def fetch_both() -> tuple[tornado.httpclient.HTTPResponse, ...]:
    async def run() -> tuple[tornado.httpclient.HTTPResponse, ...]:
        app = tornado.web.Application([("/", Page), ("/api", Api)])
        sock, port = tornado.testing.bind_unused_port()
        server = tornado.httpserver.HTTPServer(app)
        server.add_sockets([sock])
        client = tornado.httpclient.AsyncHTTPClient()
        answers = [await client.fetch(f"http://127.0.0.1:{port}{path}") for path in ("/", "/", "/api")]
        server.stop()
        return tuple(answers)

    return asyncio.run(run())


def test_each_response_has_its_own_nonce_and_json_is_json():
    first, second, api = fetch_both()
    nonces = [re.search(r"'nonce-([^']+)'", r.headers["Content-Security-Policy"]).group(1) for r in (first, second)]
    assert nonces[0] != nonces[1] and f'nonce="{nonces[0]}"' in first.body.decode()
    policy = first.headers["Content-Security-Policy"]
    assert "script-src 'nonce-" in policy and "unsafe-inline" not in policy and "object-src 'none'" in policy
    assert {r.headers["X-Content-Type-Options"] for r in (first, second, api)} == {"nosniff"}
    assert api.headers["Content-Type"].startswith("application/json")


def test_every_script_and_style_of_the_service_pages_carries_the_nonce():
    for page in (grading_web.STUDENT_PAGE, grading_web.QUEUE_PAGE, lms_web.PAGE):
        tags = re.findall(r"<(?:script|style)\b[^>]*>", page)
        assert tags and all('nonce="{nonce}"' in t for t in tags), tags


def test_a_value_put_into_a_script_cannot_end_it():
    assert "</script>" not in script_value("</script><script>alert(1)</script>")
    assert script_value("a<!--b") == '"a\\u003c!--b"'
