"""The course in an LMS, end to end: a real JupyterHub on https, launched from the local LTI 1.3 platform.

One hub for the module, with LTI switched on (``lms``), grading on submit,
and the LMS service; the local platform (``hub.lms.testing.platform``) plays
the LMS with the course bio101: instructor Tess, students Ann, Ben, Rex and
Fay.  In Chromium, Tess's launch reaches formgrader, and Ann's lands in
JupyterLab on her fetched notebook, where she types her solution and
submits; grading on submit grades it and the platform's gradebook page shows
100.  Ben launches without a browser, submits the skip-connection bug from a
terminal and gets 70.  Forged, replayed, expired and unregistered launches
are refused on the hub's error page and create nothing; the roster sync
enrols a student who never launched and keeps one who left; a refusal by
the LMS reaches the instructor's pages; Dot, Eli and Gil submit while the
LMS is down and the LMS service is killed with SIGKILL, and every score
arrives once it is back; a restart of the hub posts nothing twice.  Needs
what tests/test_hub.py needs.
"""

from __future__ import annotations

import html
import os
import re
import time
from pathlib import Path

import nbformat
import pytest
import requests
from jwcrypto import jwk
from nbgrader.api import Gradebook

from grader.course import NOTEBOOK, reference_solutions
from grader.dev.examples import fill, solutions_for
from hub import accounts
from hub.layout import ASSIGNMENT
from hub.lms.outbox import PENDING, Outbox
from hub.lms.tables import lms_engine
from hub.lms.testing.platform import new_person
from tests.lms_harness import (
    COURSE,
    HttpLaunch,
    account_of,
    artifacts,
    grading_on_submit,
    launched_session,
    lms_hub,
    lms_score,
    local_lms,
    put_notebook,
    wait_for_score,
)
from tests.test_hub import (
    BROWSER_ARGS,
    CHROMIUM,
    MISSING,
    open_assignments,
    release_notebook,
    submit,
    type_solutions,
)

pytestmark = [pytest.mark.slow, pytest.mark.hub]
if MISSING and not os.environ.get("CI"):
    pytest.skip("; ".join(MISSING), allow_module_level=True)

ARTIFACTS = artifacts("lms")
ON = grading_on_submit("feedback")
SANDBOX = "mal-sandbox"
PEOPLE = [("Tess", "Teacher", "Instructor"), ("Ann", "Archer", "Learner"), ("Ben", "Baker", "Learner"),
          ("Rex", "Replay", "Learner"), ("Fay", "Forger", "Learner"), ("Dot", "Burst", "Learner"),
          ("Eli", "Burst", "Learner"), ("Gil", "Burst", "Learner")]


@pytest.fixture(scope="module")
def lms():
    # Another course on the same deployment, as with a tool installed for a whole Canvas account.
    with local_lms(PEOPLE, {SANDBOX: ("Mal's sandbox", "U-Net segmentation (copied link)")}) as platform:
        yield platform


@pytest.fixture(scope="module")
def hub(small_data, lms):
    assert not MISSING, MISSING
    # The hub's course bound to bio101 (hub.lms.binding); the sandbox course shares the deployment.
    with lms_hub(small_data, lms, ARTIFACTS, ON) as running:
        yield running


def test_an_instructors_launch_opens_formgrader(hub, lms):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 1000}).new_page()
            page.goto(f"{lms.issuer}/course/{COURSE}?user={lms.people['Tess'].sub}")
            # Her first launch sets her up (account, gradebook): over 30 s on a busy machine.
            page.get_by_role("link", name="U-Net segmentation").click(timeout=240_000)
            page.wait_for_url("**/services/unet-segmentation/formgrader**", timeout=180_000)
            page.get_by_text("Manage Assignments").first.wait_for(timeout=120_000)
            page.get_by_text(ASSIGNMENT).first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "tess_formgrader.png"))
        finally:
            browser.close()
    teacher = account_of(hub, lms, "Tess")
    assert teacher and accounts.tag_of(teacher) == hub.layout.account_tag
    with Gradebook(f"sqlite:///{hub.layout.course / 'gradebook.db'}") as gb:
        assert teacher not in {s.id for s in gb.students}  # a grader, not a student


def test_a_student_launches_works_submits_and_the_lms_gradebook_shows_100(hub, lms):
    from playwright.sync_api import sync_playwright

    nb = release_notebook(hub)
    code = reference_solutions()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            page.goto(f"{lms.issuer}/course/{COURSE}?user={lms.people['Ann'].sub}")
            # Her first launch sets her up (account, gradebook, fetch): over 30 s on a busy machine.
            page.get_by_role("link", name="U-Net segmentation").click(timeout=240_000)
            page.wait_for_url(f"**/lab/tree/{ASSIGNMENT}/{NOTEBOOK}.ipynb**", timeout=240_000)
            page.screenshot(path=str(ARTIFACTS / "ann_landed.png"))
            type_solutions(page, nb, code, timeout=180_000)
            open_assignments(page)
            submit(page)
            submitted = time.monotonic()
            waited = wait_for_score(lms, "Ann", 100)
            # The instructor looks at the LMS's gradebook.
            book = context.new_page()
            book.goto(f"{lms.issuer}/course/{COURSE}/gradebook")
            row = book.locator("#gradebook tr", has_text="Ann Archer")
            assert row.locator(".score").inner_text() == "100"
            book.screenshot(path=str(ARTIFACTS / "lms_gradebook_ann.png"))
        finally:
            browser.close()
    print(f"Ann: from Submit to 100 in the LMS's gradebook in {time.monotonic() - submitted:.1f} s "
          f"(polled {waited:.1f} s)")
    ann = account_of(hub, lms, "Ann")
    assert ann and (os.stat(f"/home/{ann}").st_mode & 0o777) == 0o700
    with Gradebook(f"sqlite:///{hub.layout.course / 'gradebook.db'}") as gb:
        student = gb.find_student(ann)
        assert (student.first_name, student.last_name, student.email) == ("Ann", "Archer", lms.people["Ann"].email)
    assert len(lms.courses[COURSE].lineitems) == 1
    [post] = [p for p in lms.score_posts if p["userId"] == lms.people["Ann"].sub]
    assert (post["scoreGiven"], post["scoreMaximum"], post["gradingProgress"]) == (100, 100, "FullyGraded")


def test_a_student_with_one_wrong_exercise_gets_70_and_a_second_launch_keeps_her_work(hub, lms):
    launch = HttpLaunch(hub, lms, "Ben")
    landed = launch.post()
    assert landed.status_code == 302 and f"/lab/tree/{ASSIGNMENT}/{NOTEBOOK}.ipynb" in landed.headers["Location"]
    ben = account_of(hub, lms, "Ben")
    notebook = Path(f"/home/{ben}/{ASSIGNMENT}/{NOTEBOOK}.ipynb")
    assert notebook.exists()  # fetched for him on his first launch
    text = nbformat.writes(fill(release_notebook(hub), solutions_for("bug_conv_block")))
    staged = Path(f"/tmp/{ben}-{os.getpid()}.ipynb")
    staged.write_text(text)
    staged.chmod(0o644)
    assert hub.as_user(ben, ["cp", str(staged), str(notebook)]).returncode == 0
    staged.unlink()
    again = HttpLaunch(hub, lms, "Ben").post()
    assert again.status_code == 302 and notebook.read_text() == text  # never overwritten
    result = hub.nbgrader_as(ben, "submit", ASSIGNMENT)
    assert result.returncode == 0, result.stdout + result.stderr
    wait_for_score(lms, "Ben", 70)
    assert len(lms.courses[COURSE].lineitems) == 1


def forged_token(lms, claims: dict, **changes) -> str:
    return lms.sign({**claims, **changes})


def test_forged_replayed_expired_and_unregistered_launches_are_refused_and_create_nothing(hub, lms):
    tag = hub.layout.account_tag
    before = set(accounts.tagged_users(tag))
    fay = HttpLaunch(hub, lms, "Fay")
    other_key = jwk.JWK.generate(kty="RSA", size=2048).export_to_pem(private_key=True, password=None).decode()
    cases = [
        (lms.sign(fay.claims, private_pem=other_key), "signature or claims are not valid"),
        (forged_token(lms, fay.claims, exp=int(time.time()) - 60), "expired"),
        (forged_token(lms, fay.claims, **{"https://purl.imsglobal.org/spec/lti/claim/deployment_id": "d-9"}),
         "deployment"),
        (forged_token(lms, fay.claims, aud="another-tool"), "no registration"),
    ]
    for token, reason in cases:
        page = fay.post(token)
        assert page.status_code in (400, 401, 403) and reason in html.unescape(page.text), (reason, page.text[-800:])
    assert account_of(hub, lms, "Fay") is None and set(accounts.tagged_users(tag)) == before
    # A launch from an LMS the hub has no registration for ends at the login initiation.
    refused = requests.get(f"{hub.url}/hub/lti13/oauth_login", verify=str(lms.tls.ca), timeout=30, params={
        "iss": "https://lms.evil.example", "login_hint": "x", "target_link_uri": f"{hub.url}/hub"},
        allow_redirects=False)
    assert refused.status_code == 403 and "no registration" in html.unescape(refused.text)
    # A good launch replayed whole, cookies and all.
    rex = HttpLaunch(hub, lms, "Rex")
    assert rex.post().status_code == 302
    replay = rex.post()
    assert replay.status_code == 403 and "already used once" in html.unescape(replay.text)
    assert set(accounts.tagged_users(tag)) == before | {account_of(hub, lms, "Rex")}


def test_the_roster_sync_enrols_who_never_launched_and_keeps_who_left(hub, lms):
    cleo = lms.enrol(COURSE, new_person("Cleo", "Newcomer"))
    lms.people["Cleo"] = cleo
    lms.unenrol(COURSE, lms.people["Ben"].sub)
    session, ca = launched_session(hub, lms, "Tess")
    service = f"{hub.url}/services/{hub.layout.lms_service}/"
    page = session.get(service, timeout=60, verify=ca)
    assert page.status_code == 200 and "Sync the rosters now" in page.text, page.text[-1500:]
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
    assert session.post(f"{service}sync", data={"_xsrf": xsrf}, timeout=60, verify=ca).ok
    deadline = time.monotonic() + 120
    while True:
        status = session.get(f"{service}api/status", timeout=60, verify=ca).json()
        enrolled = {p["email"]: p["enrolled"] for p in status["people"]}
        if enrolled.get(cleo.email) == "yes" and enrolled.get(lms.people["Ben"].email, "").startswith("no"):
            break
        assert time.monotonic() < deadline, status
        time.sleep(1)
    with Gradebook(f"sqlite:///{hub.layout.course / 'gradebook.db'}") as gb:
        emails = {s.email: s.id for s in gb.students}
        assert cleo.email in emails  # before she ever launched
        assert gb.find_submission(ASSIGNMENT, account_of(hub, lms, "Ben")).score == 70  # kept
    assert accounts.tag_of(emails[cleo.email]) is None  # her unix account waits for her first launch


def test_a_refusal_by_the_lms_is_on_the_instructors_pages(hub, lms):
    rex = account_of(hub, lms, "Rex")
    lms.answers.append(403)  # the next call of the LMS's services is refused
    result = hub.nbgrader_as(rex, "submit", ASSIGNMENT)  # his notebook as fetched: 0 points
    assert result.returncode == 0, result.stdout + result.stderr
    session, ca = launched_session(hub, lms, "Tess")
    service = f"{hub.url}/services/{hub.layout.lms_service}/"
    deadline = time.monotonic() + 180
    while not (refused := session.get(f"{service}api/status", timeout=60, verify=ca).json()["refused"]):
        assert time.monotonic() < deadline, "the refusal did not reach the instructor's page"
        time.sleep(1)
    assert refused[0]["student"] == rex and "403" in refused[0]["reason"]
    assert "403" in session.get(service, timeout=60, verify=ca).text
    # An instructor the LMS sent also sees the grading queue (by the graders' group, not a list).
    queue = session.get(f"{hub.url}/services/{hub.layout.grading_service}/queue", timeout=60, verify=ca)
    assert queue.status_code == 200 and rex in queue.text


def lms_service_pid() -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().endswith(b"-m\0hub.lms.service\0"):
                    return int(entry.name)
            except OSError:
                pass
    return None


def test_the_lms_down_and_the_service_killed_during_a_burst_lose_no_score(hub, lms):
    burst = {"Dot": reference_solutions(), "Eli": solutions_for("bug_conv_block"), "Gil": reference_solutions()}
    for given, code in burst.items():
        assert HttpLaunch(hub, lms, given).post().status_code == 302
        put_notebook(hub, account_of(hub, lms, given), code)
    lms.outage()
    try:
        for given in burst:
            result = hub.nbgrader_as(account_of(hub, lms, given), "submit", ASSIGNMENT)
            assert result.returncode == 0, result.stderr
        engine = lms_engine(f"sqlite:///{hub.layout.course / 'grade_on_submit' / 'queue.sqlite'}")
        waiting: list = []
        deadline = time.monotonic() + 300
        while len(waiting) < len(burst):
            assert time.monotonic() < deadline, "the burst's scores did not reach the outbox"
            time.sleep(1)
            waiting = [r for r in Outbox(engine).rows((PENDING,)) if r.last_error
                       and r.account in {account_of(hub, lms, g) for g in burst}]
        killed = lms_service_pid()
        assert killed is not None
        os.kill(killed, 9)  # the LMS service, while the LMS is down and the scores wait
    finally:
        lms.restore()
    for given, expected in [("Dot", 100), ("Eli", 70), ("Gil", 100)]:
        wait_for_score(lms, given, expected, timeout=300)
    assert lms_service_pid() not in (None, killed)  # the hub started it again
    assert len(lms.courses[COURSE].lineitems) == 1


def test_restarting_the_hub_posts_nothing_twice_and_keeps_one_column(hub, lms, small_data):
    config = requests.get(f"{hub.url}/hub/lti13/config", verify=str(lms.tls.ca), timeout=30).json()
    assert config["public_jwk_url"] == f"{hub.url}/hub/lti13/jwks" and len(config["scopes"]) == 3
    posts = len(lms.score_posts)
    hub.restart(small_data)
    time.sleep(15)  # the LMS service reconciles every 2 s
    assert len(lms.score_posts) == posts
    assert len(lms.courses[COURSE].lineitems) == 1
    assert lms_score(lms, "Ann") == 100


def protected_pages(hub) -> dict[str, str]:
    return {"formgrader": f"{hub.url}/services/{hub.layout.course_id}/formgrader",
            "course service": f"{hub.url}/services/{hub.layout.course_id}/lab",
            "formgrader API": f"{hub.url}/services/{hub.layout.course_id}/formgrader/api/students",
            "LMS page": f"{hub.url}/services/{hub.layout.lms_service}/",
            "LMS API": f"{hub.url}/services/{hub.layout.lms_service}/api/status"}


def answers(session: requests.Session, url: str, ca: str) -> int:
    """The status a logged-in person finally gets for ``url`` (following the services' OAuth redirects)."""
    return session.get(url, timeout=120, verify=ca).status_code


def as_role(lms, course: str, given: str, role: str):
    person = lms.people[given]
    return lms.enrol(course, type(person)(person.sub, person.given_name, person.family_name, person.email, role=role))


def test_roles_belong_to_the_bound_course_and_a_lost_role_is_taken_away(hub, lms):
    """Issue #30: a learner here who teaches a sandbox on the same deployment never becomes a grader here."""
    lms.people["Mal"] = lms.enrol(COURSE, new_person("Mal", "Lory"))
    as_role(lms, SANDBOX, "Mal", "Instructor")
    session, ca = launched_session(hub, lms, "Mal")  # his launch in bio101, as a learner
    for what, url in protected_pages(hub).items():
        assert answers(session, url, ca) == 403, what
    # His launch as the sandbox's instructor is refused, whatever the deployment shares; his session is unchanged.
    sandbox = HttpLaunch(hub, lms, "Mal", SANDBOX).post()
    assert sandbox.status_code == 403 and "belongs to another LMS course" in html.unescape(sandbox.text)
    for what, url in protected_pages(hub).items():
        assert answers(session, url, ca) == 403, what
    mal = account_of(hub, lms, "Mal")
    assert hub.layout.instructors_group not in groups_of(hub, mal)
    # A sandbox learner, TA or content developer who is not in bio101 gets nothing, not even an account.
    for role in ("Learner", "TeachingAssistant", "ContentDeveloper"):
        lms.people[f"S-{role}"] = lms.enrol(SANDBOX, new_person("Sand", role, role=role))
        assert HttpLaunch(hub, lms, f"S-{role}", SANDBOX).post().status_code == 403
        assert account_of(hub, lms, f"S-{role}") is None
    # A TA of bio101 grades; once the LMS makes him a learner, his next launch takes formgrader away.
    lms.people["Gus"] = lms.enrol(COURSE, new_person("Gus", "Grader", role="TeachingAssistant"))
    session, ca = launched_session(hub, lms, "Gus")
    assert answers(session, protected_pages(hub)["formgrader API"], ca) == 200
    as_role(lms, COURSE, "Gus", "Learner")
    session, ca = launched_session(hub, lms, "Gus")
    assert hub.layout.instructors_group not in groups_of(hub, account_of(hub, lms, "Gus"))
    assert answers(session, protected_pages(hub)["LMS page"], ca) == 403


def groups_of(hub, account: str) -> set[str]:
    import sqlite3

    with sqlite3.connect(hub.layout.hub_dir / "jupyterhub.sqlite") as db:
        return {name for (name,) in db.execute(
            "select groups.name from groups join user_group_map on groups.id = user_group_map.group_id "
            "join users on users.id = user_group_map.user_id where users.name = ?", (account,))}


def test_lti_is_refused_on_the_internal_plain_http_port(hub, lms):
    internal = f"http://127.0.0.1:{hub.layout.hub_api_port}/hub/lti13"
    login = requests.get(f"{internal}/oauth_login", params={"iss": lms.issuer, "login_hint": "x",
                                                             "client_id": lms.client_id,
                                                             "target_link_uri": f"{hub.url}/hub"},
                         allow_redirects=False, timeout=30)
    assert login.status_code == 403 and "https address" in html.unescape(login.text)
    launch = HttpLaunch(hub, lms, "Ann")
    callback = requests.post(f"{internal}/oauth_callback", data=launch.form, headers={"Cookie": launch.cookies},
                             allow_redirects=False, timeout=60)
    assert callback.status_code == 403 and "https address" in html.unescape(callback.text)


def test_names_that_are_script_run_nowhere_on_the_lms_and_queue_pages(hub, lms):
    """A student whose every name field is script launches and submits; the instructor's pages run none of it."""
    from playwright.sync_api import sync_playwright

    mark = "(window.__pwned=(window.__pwned||[])).push('{}')"
    hostile = lms.enrol(COURSE, new_person("Xss", "Student"))
    hostile.given_name = f"<script>{mark.format('given')}</script>"
    hostile.family_name = f'"><img src=x onerror="{mark.format("family")}">'
    hostile.email = f"<svg onload=\"{mark.format('email')}\"></svg>@x.example"
    lms.people["Xss"] = hostile
    assert HttpLaunch(hub, lms, "Xss").post().status_code == 302
    xss = account_of(hub, lms, "Xss")
    result = hub.nbgrader_as(xss, "submit", ASSIGNMENT)
    assert result.returncode == 0, result.stdout + result.stderr
    session, ca = launched_session(hub, lms, "Tess")
    pages = [f"{hub.url}/services/{hub.layout.lms_service}/", f"{hub.url}/services/{hub.layout.grading_service}/queue"]
    deadline = time.monotonic() + 240
    while xss not in session.get(pages[1], timeout=60, verify=ca).text or "graded" not in session.get(
            pages[1], timeout=60, verify=ca).text:
        assert time.monotonic() < deadline, "the hostile student's submission was not graded"
        time.sleep(2)
    for url in pages:
        answer = session.get(url, timeout=60, verify=ca)
        policy = answer.headers["Content-Security-Policy"]
        assert "script-src 'nonce-" in policy and answer.headers["X-Content-Type-Options"] == "nosniff"
    status = session.get(f"{pages[0]}api/status", timeout=60, verify=ca)
    assert status.headers["Content-Type"].startswith("application/json")
    assert status.headers["X-Content-Type-Options"] == "nosniff"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            context = browser.new_context(ignore_https_errors=True)
            context.add_cookies([{"name": c.name, "value": c.value, "domain": "127.0.0.1", "path": c.path or "/"}
                                 for c in session.cookies])
            page = context.new_page()
            for url in pages + [protected_pages(hub)["formgrader"] + "/manage_students"]:
                page.goto(url)
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(500)
                assert page.evaluate("window.__pwned || []") == [], url
                page.screenshot(path=str(ARTIFACTS / f"hostile_{url.rstrip('/').rsplit('/', 1)[-1]}.png"))
            assert "<script>" in page.inner_text("body")  # formgrader's table shows the name, as text
        finally:
            browser.close()


def test_a_hanging_key_endpoint_stalls_nothing_but_its_own_launches(hub, lms):
    """Launches signed with made-up key ids while the LMS's key set hangs: the hub keeps answering others."""
    from concurrent.futures import ThreadPoolExecutor

    ann = HttpLaunch(hub, lms, "Ann")
    time.sleep(31)  # past the hub's refetch interval, whatever launch fetched the key set last
    lms.keys_delay, before = 20.0, lms.keys_requests
    ca = str(lms.tls.ca)
    try:
        with ThreadPoolExecutor(12) as pool:
            launches = [pool.submit(ann.post, lms.sign(ann.claims, headers={"kid": f"made-up-{n}"}))
                        for n in range(12)]
            time.sleep(0.5)  # the launches wait for the one fetch now
            health = []
            while not all(f.done() for f in launches):
                started = time.monotonic()
                assert requests.get(f"{hub.url}/hub/health", verify=ca, timeout=30).ok
                health.append(time.monotonic() - started)
                time.sleep(0.2)
            answers = [f.result() for f in launches]
    finally:
        lms.keys_delay = 0.0
    print(f"\n12 launches with made-up key ids, the key set hanging 20 s: refused in "
          f"{max(a.elapsed.total_seconds() for a in answers):.1f} s; meanwhile {len(health)} other requests, "
          f"slowest {max(health) * 1000:.0f} ms")
    assert all(a.status_code == 403 and "cannot be checked" in html.unescape(a.text) for a in answers)
    assert lms.keys_requests == before + 1  # one fetch for all twelve
    # The hub answered others all the while the fetch hung: many requests, none waiting for the key set.
    assert len(health) >= 5 and max(health) < 5
