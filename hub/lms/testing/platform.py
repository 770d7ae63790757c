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
import html
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import jwt
import requests
import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web
from jwcrypto import jwk
from lti1p3platform.ltiplatform import LTI1P3PlatformConfAbstract
from lti1p3platform.message_launch import LTIAdvantageMessageLaunchAbstract
from lti1p3platform.oidc_login import OIDCLoginAbstract
from lti1p3platform.registration import Registration

from hub.lms.testing.tls import TlsFiles

LIS = "http://purl.imsglobal.org/vocab/lis/v2/membership#"
ROLE_URIS = {"Learner": LIS + "Learner", "Instructor": LIS + "Instructor",
             "TeachingAssistant": "http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant",
             "ContentDeveloper": LIS + "ContentDeveloper", "Mentor": LIS + "Mentor"}
SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/"
LINEITEM, SCORE, RESULT = SCOPE + "lineitem", SCOPE + "score", SCOPE + "result.readonly"
LINEITEM_READ = SCOPE + "lineitem.readonly"
MEMBERSHIP = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
PAGE = 2  # small pages, so that paging is always exercised


@dataclass
class Person:
    """A person of the LMS in one course."""

    sub: str
    given_name: str
    family_name: str
    email: str
    role: str = "Learner"
    status: str = "Active"

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}".strip()


@dataclass
class Course:
    """A course (an LTI context) with its people, assignment links, line items and scores."""

    id: str
    title: str
    people: dict[str, Person] = field(default_factory=dict)
    # link id -> (title, the assignment it opens, or "" for the default)
    links: dict[str, tuple[str, str]] = field(default_factory=dict)
    lineitems: dict[str, dict[str, Any]] = field(default_factory=dict)
    # line item id -> user -> the last score posted
    scores: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


class _Config(LTI1P3PlatformConfAbstract):
    def init_platform_config(self, **kwargs: Any) -> None:
        self._platform_registration: Registration = kwargs["registration"]

    def get_registration_by_params(self, **kwargs: Any) -> Registration:
        return self._platform_registration


class _Login(OIDCLoginAbstract):
    def set_lti_message_hint(self, **kwargs: Any) -> None:
        self._lti_message_hint = kwargs["hint"]

    def get_redirect(self, url: str) -> str:
        return url


class _Launch(LTIAdvantageMessageLaunchAbstract):
    def __init__(self, preflight: dict[str, Any], config: _Config):
        super().__init__(None, config)
        self._preflight = preflight

    def get_preflight_response(self) -> dict[str, Any]:
        return self._preflight

    def render_launch_form(self, launch_data: dict[str, Any], **kwargs: Any) -> str:
        fields = "".join(f'<input type="hidden" name="{k}" value="{html.escape(str(launch_data[k]))}">'
                         for k in ("id_token", "state"))
        return (f'<!doctype html><html><body><p>Opening the tool...</p>'
                f'<form id="launch" method="post" action="{html.escape(str(launch_data["launch_url"]))}">'
                f'{fields}<noscript><button>Continue</button></noscript></form>'
                f'<script>document.getElementById("launch").submit()</script></body></html>')


class LocalPlatform:
    """The LMS: ``issuer`` is its https URL; the tool is registered with ``register_tool``."""

    client_id = "unet-hub-tool"
    deployment_id = "deployment-1"

    def __init__(self, tls: TlsFiles, port: int = 0):
        self.tls, self.port = tls, port
        key = jwk.JWK.generate(kty="RSA", size=2048)
        self.private_pem = key.export_to_pem(private_key=True, password=None).decode()
        self.public_pem = key.export_to_pem().decode()
        self.courses: dict[str, Course] = {}
        self.lock = threading.RLock()
        self.answers: list[int] = []
        self.delay = 0.0
        self.token_requests: list[list[str]] = []
        self.score_posts: list[dict[str, Any]] = []
        self.lineitem_creations = 0
        # Seconds each score post takes before the LMS records it (a slow LMS; a tool killed meanwhile).
        self.score_delay = 0.0
        self.score_arrivals = 0
        self.issued_tokens: list[str] = []
        self._jtis: set[str] = set()
        self.tool: dict[str, Any] = {}
        self._loop: tornado.ioloop.IOLoop | None = None
        self._server: tornado.httpserver.HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- the LMS's own data ---------------------------------------------------------------------------------------
    @property
    def issuer(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def add_course(self, course_id: str, title: str) -> Course:
        with self.lock:
            return self.courses.setdefault(course_id, Course(course_id, title))

    def enrol(self, course_id: str, person: Person) -> Person:
        with self.lock:
            self.courses[course_id].people[person.sub] = person
        return person

    def unenrol(self, course_id: str, sub: str) -> None:
        """The person leaves the course: NRPS lists them as Deleted, and their scores are refused."""
        with self.lock:
            self.courses[course_id].people[sub].status = "Deleted"

    def add_link(self, course_id: str, link_id: str, title: str, assignment: str = "") -> None:
        with self.lock:
            self.courses[course_id].links[link_id] = (title, assignment)

    def register_tool(self, login_url: str, redirect_uri: str, target_link_uri: str,
                      jwks: dict[str, Any] | None = None, jwks_url: str = "") -> None:
        """What an instructor types into the LMS's developer key / tool registration."""
        self.tool = {"login_url": login_url, "redirect_uri": redirect_uri, "target_link_uri": target_link_uri,
                     "jwks": jwks, "jwks_url": jwks_url}

    def tool_registration(self) -> dict[str, Any]:
        """What the LMS shows the instructor to register it on the tool's side (``hub.lms.registrations``)."""
        return {"name": "Local LTI 1.3 platform", "issuer": self.issuer, "client_id": self.client_id,
                "deployment_ids": [self.deployment_id], "authorize_url": f"{self.issuer}/auth",
                "token_url": f"{self.issuer}/token", "jwks_url": f"{self.issuer}/jwks", "ca_bundle": str(self.tls.ca)}

    def _registration(self) -> Registration:
        registration = (Registration().set_iss(self.issuer).set_client_id(self.client_id)
                        .set_deployment_id(self.deployment_id).set_oidc_login_url(self.tool["login_url"])
                        .set_launch_url(self.tool["target_link_uri"]).set_platform_private_key(self.private_pem)
                        .set_platform_public_key(self.public_pem))
        registration.set_tool_key_set(self._tool_keys())
        return registration

    def _tool_keys(self) -> Any:
        if self.tool.get("jwks"):
            return self.tool["jwks"]
        response = requests.get(self.tool["jwks_url"], timeout=10, verify=str(self.tls.ca))
        response.raise_for_status()
        return response.json()

    def sign(self, claims: dict[str, Any], private_pem: str | None = None, headers: dict[str, Any] | None = None,
             algorithm: str = "RS256") -> str:
        """A token with exactly ``claims``, signed with this platform's key (or another): for forged launches."""
        kid = jwk.JWK.from_pem(self.private_pem.encode()).thumbprint()
        return jwt.encode(claims, private_pem or self.private_pem, algorithm=algorithm,
                          headers=headers if headers is not None else {"kid": kid})

    # -- reading what the tool did --------------------------------------------------------------------------------
    def gradebook(self, course_id: str) -> dict[str, dict[str, float | None]]:
        """Line item label -> person's name -> score given (what the gradebook page shows)."""
        with self.lock:
            course = self.courses[course_id]
            return {item["label"]: {course.people[u].name: s.get("scoreGiven")
                                    for u, s in course.scores.get(item_id, {}).items()}
                    for item_id, item in course.lineitems.items()}

    # -- running ---------------------------------------------------------------------------------------------------
    def application(self) -> tornado.web.Application:
        return tornado.web.Application([
            (r"/", _Home), (r"/course/([^/]+)", _CoursePage), (r"/course/([^/]+)/gradebook", _GradebookPage),
            (r"/course/([^/]+)/launch/([^/]+)", _StartLaunch), (r"/auth", _Authorize), (r"/jwks", _Keys),
            (r"/token", _Token), (r"/api/([^/]+)/lineitems", _LineItems),
            (r"/api/([^/]+)/lineitems/([^/]+)", _LineItem), (r"/api/([^/]+)/lineitems/([^/]+)/scores", _Scores),
            (r"/api/([^/]+)/lineitems/([^/]+)/results", _Results), (r"/api/([^/]+)/memberships", _Memberships),
        ], platform=self)

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
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.tls.cert), str(self.tls.key))
        self._server = tornado.httpserver.HTTPServer(self.application(), ssl_options=context)
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


class _Handler(tornado.web.RequestHandler):
    @property
    def platform(self) -> LocalPlatform:
        return self.settings["platform"]

    def check_xsrf_cookie(self) -> None:
        return None

    def fail(self, status: int, reason: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": reason}))

    def page(self, title: str, body: str) -> None:
        self.finish(f"<!doctype html><html><head><title>{html.escape(title)}</title></head>"
                    f"<body><h1>{html.escape(title)}</h1>{body}</body></html>")


class _Home(_Handler):
    def get(self) -> None:
        with self.platform.lock:
            items = "".join(f'<li><a href="/course/{c.id}?user={p.sub}">{html.escape(c.title)} as '
                            f'{html.escape(p.name)} ({p.role})</a></li>'
                            for c in self.platform.courses.values() for p in c.people.values())
        self.page("Local LTI 1.3 platform", f"<ul>{items}</ul>")


class _CoursePage(_Handler):
    def get(self, course_id: str) -> None:
        user = self.get_argument("user")
        with self.platform.lock:
            course = self.platform.courses[course_id]
            person = course.people[user]
            links = "".join(f'<li><a class="lti-link" href="/course/{course_id}/launch/{link}?user={user}">'
                            f'{html.escape(title)}</a></li>' for link, (title, _) in course.links.items())
        gradebook = (f'<p><a href="/course/{course_id}/gradebook">Gradebook</a></p>'
                     if person.role != "Learner" else "")
        self.page(course.title, f"<p>Signed in as {html.escape(person.name)}</p><ul>{links}</ul>{gradebook}")


class _GradebookPage(_Handler):
    def get(self, course_id: str) -> None:
        with self.platform.lock:
            course = self.platform.courses[course_id]
            items = list(course.lineitems.items())
            head = "".join(f"<th>{html.escape(item['label'])}</th>" for _, item in items)
            rows = ""
            for person in course.people.values():
                if person.role != "Learner":
                    continue
                cells = ""
                for item_id, _ in items:
                    score = course.scores.get(item_id, {}).get(person.sub, {})
                    given = score.get("scoreGiven")
                    cells += f'<td class="score">{"" if given is None else f"{given:g}"}</td>'
                rows += f'<tr data-user="{person.sub}"><td>{html.escape(person.name)}</td>{cells}</tr>'
        self.page(f"{course.title}: gradebook", f'<table id="gradebook"><tr><th>Student</th>{head}</tr>{rows}</table>')


class _StartLaunch(_Handler):
    """The person clicks an assignment link: the OIDC login initiation to the tool (a redirect)."""

    def get(self, course_id: str, link_id: str) -> None:
        user = self.get_argument("user")
        platform = self.platform
        config = _Config(registration=platform._registration())
        login = _Login(None, config)
        login.set_lti_message_hint(hint=f"{course_id}:{link_id}")
        self.redirect(login.initiate_login(user))


class _Authorize(_Handler):
    """The tool's authentication request: a signed launch, posted back by the browser."""

    def get(self) -> None:
        self._authorize()

    def post(self) -> None:
        self._authorize()

    def _authorize(self) -> None:
        platform = self.platform
        args = {k: self.get_argument(k) for k in self.request.arguments}
        if args.get("redirect_uri") != platform.tool.get("redirect_uri"):
            return self.fail(400, f"redirect_uri {args.get('redirect_uri')!r} is not registered")
        if (args.get("response_type"), args.get("scope"), args.get("response_mode")) != (
                "id_token", "openid", "form_post"):
            return self.fail(400, "not an LTI 1.3 authentication request")
        course_id, _, link_id = args.get("lti_message_hint", "").partition(":")
        with platform.lock:
            course = platform.courses.get(course_id)
            person = course.people.get(args.get("login_hint", "")) if course else None
            if course is None or person is None or person.status != "Active" or link_id not in course.links:
                return self.fail(403, "the person is not in that course, or the link is not there")
            title, assignment = course.links[link_id]
        config = _Config(registration=platform._registration())
        launch = _Launch(args, config)
        launch.set_user_data(person.sub, [ROLE_URIS[person.role]], person.name, person.email)
        launch.set_extra_claims({"given_name": person.given_name, "family_name": person.family_name})
        launch.set_resource_link_claim(link_id, title=title)
        launch.set_launch_context_claim(course.id, context_title=course.title, context_label=course.id)
        if assignment:
            launch.set_custom_parameters_claim({"assignment": assignment})
        launch.set_ags(f"{platform.issuer}/api/{course.id}/lineitems", allow_creating_lineitems=True)
        launch.set_nrps(f"{platform.issuer}/api/{course.id}/memberships")
        try:
            self.finish(launch.lti_launch())
        except Exception as error:  # the library's own checks of the request
            self.fail(400, f"{type(error).__name__}: {error}")


class _Keys(_Handler):
    def get(self) -> None:
        public = json.loads(jwk.JWK.from_pem(self.platform.public_pem.encode()).export_public())
        public.update(alg="RS256", use="sig", kid=jwk.JWK.from_pem(self.platform.private_pem.encode()).thumbprint())
        self.finish({"keys": [public]})


class _Service(_Handler):
    """A service call: the outage controls, then the bearer token with one of ``scopes``."""

    def prepare(self) -> None:
        if self.platform.delay:
            time.sleep(self.platform.delay)
        with self.platform.lock:
            status = self.platform.answers.pop(0) if self.platform.answers else None
        if status is not None:
            if status == 429:
                self.set_header("Retry-After", "1")
            self.fail(status, "injected failure")

    def authorise(self, *scopes: str) -> bool:
        header = self.request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            self.fail(401, "no bearer token")
            return False
        try:
            claims = jwt.decode(header[7:], self.platform.public_pem, algorithms=["RS256"])
        except jwt.PyJWTError as error:
            self.fail(401, f"bad token: {error}")
            return False
        if claims.get("iss") != self.platform.issuer or not set(scopes) & set(claims.get("scopes", "").split()):
            self.fail(403, f"the token lacks the scope {' or '.join(scopes)}")
            return False
        return True

    def course(self, course_id: str) -> Course | None:
        course = self.platform.courses.get(course_id)
        if course is None:
            self.fail(404, "no such course")
        return course

    def paged(self, items: list[Any]) -> list[Any]:
        """One page of ``items``, with a Link header to the next (``limit`` as asked, else ``PAGE``)."""
        limit = int(self.get_argument("limit", str(PAGE)))
        offset = int(self.get_argument("offset", "0"))
        if offset + limit < len(items):
            query = {k: self.get_argument(k) for k in self.request.arguments if k not in ("offset", "limit")}
            query.update(offset=str(offset + limit), limit=str(limit))
            url = f"{self.platform.issuer}{self.request.path}?{urlencode(query)}"
            self.set_header("Link", f'<{url}>; rel="next"')
        return items[offset:offset + limit]


class _Token(_Service):
    def post(self) -> None:
        platform = self.platform
        form = {k: self.get_argument(k) for k in self.request.arguments}
        assertion = form.get("client_assertion", "")
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return self.fail(400, "invalid_client")
        if unverified.get("aud") not in (f"{platform.issuer}/token", [f"{platform.issuer}/token"]):
            return self.fail(400, "invalid_client: the assertion's aud is not the token URL")
        if unverified.get("iss") != platform.client_id or unverified.get("sub") != platform.client_id:
            return self.fail(400, "invalid_client: iss and sub must be the client id")
        with platform.lock:
            if not unverified.get("jti") or unverified["jti"] in platform._jtis:
                return self.fail(400, "invalid_client: the assertion's jti was used before")
            platform._jtis.add(unverified["jti"])
        config = _Config(registration=platform._registration())
        config.get_registration()
        try:
            token = config.get_access_token(form)
        except Exception as error:  # the library names what is wrong
            return self.fail(400, f"invalid_client: {type(error).__name__}: {error}")
        with platform.lock:
            platform.token_requests.append(sorted(form.get("scope", "").split()))
            platform.issued_tokens.append(token["access_token"])
        self.finish(dict(token))


class _LineItems(_Service):
    def get(self, course_id: str) -> None:
        if not self.authorise(LINEITEM, LINEITEM_READ) or (course := self.course(course_id)) is None:
            return
        with self.platform.lock:
            items = [item for item in course.lineitems.values()
                     if all(item.get(field) == self.get_argument(arg) for arg, field in
                            [("resource_id", "resourceId"), ("tag", "tag"), ("resource_link_id", "resourceLinkId")]
                            if self.get_argument(arg, None) is not None)]
        self.set_header("Content-Type", "application/vnd.ims.lis.v2.lineitemcontainer+json")
        self.finish(json.dumps(self.paged(items)))

    def post(self, course_id: str) -> None:
        if not self.authorise(LINEITEM) or (course := self.course(course_id)) is None:
            return
        body = json.loads(self.request.body or b"{}")
        if not body.get("label") or not isinstance(body.get("scoreMaximum"), int | float) or body["scoreMaximum"] <= 0:
            return self.fail(400, "a line item needs a label and a positive scoreMaximum")
        with self.platform.lock:
            item_id = str(len(course.lineitems) + 1)
            item = {**body, "id": f"{self.platform.issuer}/api/{course_id}/lineitems/{item_id}"}
            course.lineitems[item_id] = item
            self.platform.lineitem_creations += 1
        self.set_status(201)
        self.set_header("Content-Type", "application/vnd.ims.lis.v2.lineitem+json")
        self.finish(json.dumps(item))


class _LineItem(_Service):
    def get(self, course_id: str, item_id: str) -> None:
        if not self.authorise(LINEITEM, LINEITEM_READ) or (course := self.course(course_id)) is None:
            return
        if item_id not in course.lineitems:
            return self.fail(404, "no such line item")
        self.finish(json.dumps(course.lineitems[item_id]))


class _Scores(_Service):
    def post(self, course_id: str, item_id: str) -> None:
        if not self.authorise(SCORE) or (course := self.course(course_id)) is None:
            return
        if item_id not in course.lineitems:
            return self.fail(404, "no such line item")
        with self.platform.lock:
            self.platform.score_arrivals += 1
        if self.platform.score_delay:
            time.sleep(self.platform.score_delay)
        score = json.loads(self.request.body or b"{}")
        missing = [k for k in ("userId", "timestamp", "activityProgress", "gradingProgress") if k not in score]
        if missing:
            return self.fail(400, f"the score lacks {', '.join(missing)}")
        if "scoreGiven" in score and not 0 <= score["scoreGiven"] <= score.get("scoreMaximum", -1):
            return self.fail(400, "scoreGiven needs a scoreMaximum at least as large")
        with self.platform.lock:
            person = course.people.get(score["userId"])
            if person is None or person.status != "Active":
                return self.fail(422, f"user {score['userId']} is not an active member of this course")
            last = course.scores.setdefault(item_id, {}).get(score["userId"])
            when = datetime.fromisoformat(score["timestamp"])
            if last is not None and when < datetime.fromisoformat(last["timestamp"]):
                return self.fail(400, "the score is older than the one recorded")
            course.scores[item_id][score["userId"]] = score
            self.platform.score_posts.append({"course": course_id, "item": item_id, **score})
        self.set_status(204)
        self.finish()


class _Results(_Service):
    def get(self, course_id: str, item_id: str) -> None:
        if not self.authorise(RESULT) or (course := self.course(course_id)) is None:
            return
        with self.platform.lock:
            results = [{"userId": u, "resultScore": s.get("scoreGiven"), "resultMaximum": s.get("scoreMaximum")}
                       for u, s in course.scores.get(item_id, {}).items()]
        self.finish(json.dumps(self.paged(results)))


class _Memberships(_Service):
    def get(self, course_id: str) -> None:
        if not self.authorise(MEMBERSHIP) or (course := self.course(course_id)) is None:
            return
        with self.platform.lock:
            members = [{"user_id": p.sub, "status": p.status, "name": p.name, "given_name": p.given_name,
                        "family_name": p.family_name, "email": p.email, "roles": [ROLE_URIS[p.role]]}
                       for p in course.people.values()]
        page = self.paged(members)
        self.set_header("Content-Type", "application/vnd.ims.lti-nrps.v2.membershipcontainer+json")
        self.finish(json.dumps({"id": self.request.full_url(), "context": {"id": course.id, "title": course.title},
                                "members": page}))


def new_person(given: str, family: str, role: str = "Learner") -> Person:
    """A person with a sub the LMS made (opaque, as real ones are)."""
    return Person(sub=uuid.uuid4().hex, given_name=given, family_name=family,
                  email=f"{given.lower()}.{family.lower()}@example.edu", role=role)


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
    registration = platform.tool_registration()
    save_platforms(lms_dir / "platforms.json", [Platform(**{**registration, "deployment_ids": (
        platform.deployment_id,)})])
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
