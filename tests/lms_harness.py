"""What the hub tests with an LMS share: the local LTI 1.3 platform, a hub bound to its course, launches.

``local_lms`` starts the local platform (``hub.lms.testing.platform``) over
https with a throw-away certificate authority, with the course ``COURSE``
and its people; ``lms_hub`` starts a hub (``tests.hub_harness``) bound to
that course, with the LMS service.  The rest is what a person does there:
launch without a browser (``HttpLaunch``), keep the hub's cookies of a
launch (``launched_session``), put a notebook in their home, and what the
test reads back (their account, the LMS's gradebook).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jwt
import nbformat
import requests
from sqlalchemy import select

from grader.course import NOTEBOOK, ROOT
from grader.dev.examples import fill
from hub.layout import ASSIGNMENT
from hub.lms.registrations import Platform, save_platforms
from hub.lms.tables import lms_engine, people
from hub.lms.testing.platform import LocalPlatform, new_person
from hub.lms.testing.tls import make_localhost_certificate
from tests.hub_harness import RunningHub, free_ports, running_hub
from tests.test_hub import release_notebook

COURSE = "bio101"


def artifacts(name: str) -> Path:
    """Where a hub test module leaves its screenshots and the hub's log."""
    return Path(os.environ.get("UNET_ARTIFACTS", ROOT / "reports" / "browser")) / name


def grading_on_submit(show: str, **more) -> dict:
    """The course's grading-on-submit policy file: on, showing ``show`` before the due date, no hourly cap."""
    return {ASSIGNMENT: {"grade_on_submit": True, "show": show, "per_hour": 0, **more}}


@contextmanager
def local_lms(enrolled: list[tuple[str, str, str]],
              other_courses: dict[str, tuple[str, str]] | None = None) -> Iterator[LocalPlatform]:
    """The local platform with ``COURSE`` and its link, ``enrolled`` (given name, family name, role) in it.

    ``other_courses`` (id -> course title, link title) share the deployment. The platform's ``people`` holds
    each person by given name.
    """
    # Where the grader account (the LMS service) may read the CA: pytest's own folders are root's alone.
    folder = Path(tempfile.mkdtemp(prefix="unet-lms-tls-", dir="/var/tmp"))
    folder.chmod(0o755)
    tls = make_localhost_certificate(folder)
    # The harness checks that the hub is up over https: it trusts the test CA as the hub's processes do.
    before = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(tls.ca)
    platform = LocalPlatform(tls).start()
    try:
        platform.add_course(COURSE, "Biology 101")
        platform.add_link(COURSE, "unet", "U-Net segmentation")
        for course, (title, link) in (other_courses or {}).items():
            platform.add_course(course, title)
            platform.add_link(course, "unet", link)
        platform.people = {}
        for given, family, role in enrolled:
            platform.people[given] = platform.enrol(COURSE, new_person(given, family, role=role))
        yield platform
    finally:
        platform.stop()
        shutil.rmtree(folder, ignore_errors=True)
        if before is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = before


@contextmanager
def lms_hub(data: Path, lms: LocalPlatform, artifacts_folder: Path, policy: dict, **settings) -> Iterator[RunningHub]:
    """A hub bound to ``COURSE`` of ``lms`` (``hub.lms.binding``), with grading on submit under ``policy``."""
    registration = Platform(**lms.bound_registration(COURSE))
    [lms_port] = free_ports(1)

    def register(layout) -> None:
        save_platforms(layout.lms_dir / "platforms.json", [registration])

    with running_hub(data, students=[], visitors=[], artifacts=artifacts_folder, policy=policy, prepare=register,
                     lms=True, lms_port=lms_port, tls_cert=str(lms.tls.cert), tls_key=str(lms.tls.key),
                     **settings) as running:
        base = f"{running.url}/hub"
        lms.register_tool(f"{base}/lti13/oauth_login", f"{base}/lti13/oauth_callback", base,
                          jwks_url=f"{base}/lti13/jwks")
        yield running


def account_of(hub, lms, given: str) -> str | None:
    engine = lms_engine(f"sqlite:///{hub.layout.course / 'grade_on_submit' / 'queue.sqlite'}")
    with engine.begin() as db:
        return db.execute(select(people.c.account).where(people.c.sub == lms.people[given].sub)).scalar()


def lms_score(lms, given: str) -> float | None:
    name = lms.people[given].name
    return lms.gradebook(COURSE).get(ASSIGNMENT, {}).get(name)


def wait_for_score(lms, given: str, expected: float, timeout: float = 240) -> float:
    started = time.monotonic()
    while lms_score(lms, given) != expected:
        assert time.monotonic() - started < timeout, (given, lms.gradebook(COURSE), lms.score_posts[-3:])
        time.sleep(0.5)
    return time.monotonic() - started


class HttpLaunch:
    """A launch without a browser: the same redirects and form post, with one cookie jar."""

    def __init__(self, hub, lms, given: str, course: str = COURSE):
        self.hub, self.lms = hub, lms
        # verify= on each call: requests lets REQUESTS_CA_BUNDLE override a session's own.
        self.http, ca = requests.Session(), str(lms.tls.ca)
        start = self.http.get(f"{lms.issuer}/course/{course}/launch/unet", params={"user": lms.people[given].sub},
                              allow_redirects=False, timeout=30, verify=ca)
        init = self.http.get(start.headers["Location"], allow_redirects=False, timeout=30, verify=ca)
        assert init.status_code == 302, init.text
        self.cookies = "; ".join(f"{c.name}={c.value}" for c in self.http.cookies)
        auth = self.http.get(init.headers["Location"], timeout=30, verify=ca)
        self.form = {k: html.unescape(v) for k, v in re.findall(r'name="(\w+)" value="([^"]*)"', auth.text)}
        self.claims = jwt.decode(self.form["id_token"], options={"verify_signature": False})

    def post(self, id_token: str | None = None) -> requests.Response:
        """The browser's form post to the hub, with the cookies the login initiation set (sent as they were)."""
        return requests.post(f"{self.hub.url}/hub/lti13/oauth_callback", verify=str(self.lms.tls.ca),
                             data={**self.form, **({"id_token": id_token} if id_token else {})},
                             headers={"Cookie": self.cookies}, allow_redirects=False, timeout=180)


def launched_session(hub, lms, given: str, course: str = COURSE) -> tuple[requests.Session, str]:
    """``given`` logged in through their launch, as their browser would be (the hub's cookies); and the CA."""
    launch = HttpLaunch(hub, lms, given, course)
    answer = launch.post()
    session = requests.Session()
    for cookie in launch.http.cookies:
        session.cookies.set_cookie(cookie)
    for name, value in answer.cookies.items():
        session.cookies.set(name, value, domain="127.0.0.1")
    return session, str(lms.tls.ca)


def put_notebook(hub, account: str, code: dict[str, str]) -> None:
    """The student's notebook with ``code`` in it, written as the student."""
    staged = Path(f"/tmp/{account}-{os.getpid()}.ipynb")
    staged.write_text(nbformat.writes(fill(release_notebook(hub), code)))
    staged.chmod(0o644)
    try:
        target = f"/home/{account}/{ASSIGNMENT}/{NOTEBOOK}.ipynb"
        assert hub.as_user(account, ["cp", str(staged), target]).returncode == 0
    finally:
        staged.unlink()
