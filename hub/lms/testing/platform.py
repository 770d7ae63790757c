"""A local LTI 1.3 platform: an LMS on localhost with courses, enrolments, line items and a gradebook.

Built on ``lti1p3platform`` (the platform side of LTI 1.3: the OIDC login
initiation, the signed launch message with its LTI claims, access tokens
for a tool's signed client assertion); this module adds what that library
leaves to the LMS: the courses and people, the pages a person clicks, and
the Assignment and Grade Services (line items, scores, results) and Names
and Role Provisioning Services (memberships) endpoints, with paging.

It is stricter than the library where a real LMS is: a client assertion's
``aud`` must be the token URL and its ``jti`` is accepted once; a score's
``userId`` must be enrolled and active (else 422, as when a student left);
a score older than the last one is refused; scopes are granted as asked
and every request records which it asked for (``token_requests``).

For failures: ``outage()`` / ``restore()`` stop and start listening (the
LMS is down), ``answers`` holds status codes the next service calls get
(429, 500...), ``delay`` slows every service call.

It serves https in a thread of its own (``start()``); ``python -m
hub.lms.testing.platform`` runs one for the try-out hub (docs/lms.md).
"""

from __future__ import annotations

import asyncio
import ssl
import threading

import tornado.httpserver
import tornado.ioloop
import tornado.netutil

from hub.lms.testing.lms_data import Course, Person, PlatformState, new_person
from hub.lms.testing.lms_http import application
from hub.lms.testing.tls import TlsFiles

__all__ = ["Course", "LocalPlatform", "Person", "new_person"]


class LocalPlatform(PlatformState):
    """The LMS, served over https on localhost in a thread of its own."""

    def __init__(self, tls: TlsFiles, port: int = 0):
        super().__init__(tls, port)
        self._loop: tornado.ioloop.IOLoop | None = None
        self._server: tornado.httpserver.HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LocalPlatform:
        """Serve in a thread of its own; returns once it listens."""
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(asyncio.new_event_loop())
            self._loop = tornado.ioloop.IOLoop.current()
            self._listen()
            ready.set()
            self._loop.start()

        self._thread = threading.Thread(target=run, name="lti-platform", daemon=True)
        self._thread.start()
        ready.wait(30)
        return self

    def _listen(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.tls.cert), str(self.tls.key))
        self._server = tornado.httpserver.HTTPServer(application(self), ssl_options=context)
        sockets = tornado.netutil.bind_sockets(self.port, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self._server.add_sockets(sockets)

    def _in_loop(self, function) -> None:
        assert self._loop is not None
        done = threading.Event()

        def call() -> None:
            try:
                function()
            finally:
                done.set()

        self._loop.add_callback(call)
        done.wait(30)

    def outage(self) -> None:
        """The LMS goes down: nothing listens on its port, and open connections are closed."""
        def stop() -> None:
            assert self._server is not None
            self._server.stop()
            asyncio.ensure_future(self._server.close_all_connections())
        self._in_loop(stop)

    def restore(self) -> None:
        """The LMS is back, on the same port, with everything it held."""
        self._in_loop(self._listen)

    def stop(self) -> None:
        if self._loop is not None:
            self.outage()
            self._loop.add_callback(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)


def main(argv: list[str] | None = None) -> int:
    """The try-out: a local LMS with a course of three students and an instructor, registered with the hub."""
    import argparse
    import os
    from pathlib import Path

    from hub.lms.registrations import Platform, save_platforms
    from hub.lms.testing.tls import make_localhost_certificate

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--state", type=Path, default=Path(os.environ.get("UNET_HUB_STATE", "/srv/unet-hub")))
    parser.add_argument("--hub", default="https://127.0.0.1:8000", help="the hub's https URL")
    parser.add_argument("--port", type=int, default=8443)
    args = parser.parse_args(argv)
    lms_dir = args.state / "lms"
    # Beside lms/ (root only), not in it: the LMS service, as the grader account, must read the CA.
    tls = make_localhost_certificate(args.state / "try-out-tls")
    os.chmod(tls.ca.parent, 0o755)
    platform = LocalPlatform(tls, port=args.port).start()
    hub = args.hub.rstrip("/")
    platform.register_tool(f"{hub}/hub/lti13/oauth_login", f"{hub}/hub/lti13/oauth_callback", f"{hub}/hub",
                           jwks_url=f"{hub}/hub/lti13/jwks")
    platform.add_course("demo", "Computer vision (demo)")
    platform.add_link("demo", "unet", "U-Net segmentation")
    people = [new_person("Tess", "Teacher", role="Instructor"), new_person("Ann", "Archer"),
              new_person("Ben", "Baker"), new_person("Cy", "Cooper")]
    for person in people:
        platform.enrol("demo", person)
    # The hub's course is bound to the demo course: launches from any other course are refused.
    save_platforms(lms_dir / "platforms.json", [Platform(**platform.bound_registration("demo"))])
    print(f"The local LMS: {platform.issuer}/ (registered in {lms_dir / 'platforms.json'})")
    for person in people:
        print(f"  {person.role:11} {person.name:12} {platform.issuer}/course/demo?user={person.sub}")
    print(f"Start the hub in another terminal:\n  UNET_HUB_LMS=1 UNET_HUB_TLS_CERT={tls.cert} "
          f"UNET_HUB_TLS_KEY={tls.key} make hub\nThe browser will warn about the test certificate "
          f"({tls.ca}); Ctrl-C stops the LMS.")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        platform.stop()
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
