"""The local LMS's pages and its AGS, NRPS and token endpoints (tornado handlers over ``PlatformState``)."""

from __future__ import annotations

import asyncio
import html
import json
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import jwt
import tornado.web
from jwcrypto import jwk

from hub.lms.testing.lms_data import (
    LINEITEM,
    LINEITEM_READ,
    MEMBERSHIP,
    PAGE,
    RESULT,
    ROLE_URIS,
    SCORE,
    Course,
    PlatformState,
    _Config,
    _Launch,
    _Login,
)


def application(platform: PlatformState) -> tornado.web.Application:
    return tornado.web.Application([
        (r"/", _Home), (r"/course/([^/]+)", _CoursePage), (r"/course/([^/]+)/gradebook", _GradebookPage),
        (r"/course/([^/]+)/launch/([^/]+)", _StartLaunch), (r"/auth", _Authorize), (r"/jwks", _Keys),
        (r"/token", _Token), (r"/api/([^/]+)/lineitems", _LineItems),
        (r"/api/([^/]+)/lineitems/([^/]+)", _LineItem), (r"/api/([^/]+)/lineitems/([^/]+)/scores", _Scores),
        (r"/api/([^/]+)/lineitems/([^/]+)/results", _Results), (r"/api/([^/]+)/memberships", _Memberships),
    ], platform=platform)


class _Handler(tornado.web.RequestHandler):
    @property
    def platform(self) -> PlatformState:
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
        custom = {"assignment": assignment} if assignment else {}
        if person.sub in course.due_at:
            custom["due_at"] = course.due_at[person.sub]
        if custom:
            launch.set_custom_parameters_claim(custom)
        launch.set_ags(f"{platform.issuer}/api/{course.id}/lineitems", allow_creating_lineitems=True)
        launch.set_nrps(f"{platform.issuer}/api/{course.id}/memberships")
        try:
            self.finish(launch.lti_launch())
        except Exception as error:  # the library's own checks of the request
            self.fail(400, f"{type(error).__name__}: {error}")


class _Keys(_Handler):
    async def get(self) -> None:
        self.platform.keys_requests += 1
        if self.platform.keys_delay:  # a slow or hanging key endpoint
            await asyncio.sleep(self.platform.keys_delay)
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
